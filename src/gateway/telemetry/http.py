"""The monitoring HTTP server on the metrics port: /metrics, /healthz, /readyz and a read-only JSON API.

Endpoints (described in openapi.json, served at /api/openapi.json):
  /metrics            Prometheus exposition of `Metrics.registry` plus the database gauges (collectors.py)
  /healthz            200 "ok" while the process serves (liveness)
  /readyz             200 when every component is up and the database answers, else 503; JSON either way
  /api/flows          flows, newest first (?partner=&state=&since=&limit=)
  /api/flows/{id}     one flow with its events and invoices
  /api/invoices       invoices (?partner=&status=&number=&since=&limit=)
  /api/invoices/{id}  one invoice with its summary and validation report
  /api/stats          counts per state, partner, invoice status and rejection reason (?since=24h)
Errors are JSON (`{"error": ..., "message": ...}`): 400 for a bad parameter, 404 for an unknown path or
id, 405 for another method, 500 without any detail (the detail goes to the log, never to the client).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from prometheus_client.exposition import choose_encoder

from gateway.config import MetricsConfig
from gateway.errors import ConfigError
from gateway.statemachine import FlowState
from gateway.store import queries
from gateway.store.db import Store
from gateway.telemetry.collectors import StoreCollector, rule_pack_versions
from gateway.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from gateway.runtime.supervisor import Health

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_STATS_PERIOD = "24h"
MAX_ID_LENGTH = 64
JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An answer for the client: status, a short machine-readable code, a human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(queries.jsonable(data), ensure_ascii=False, default=str).encode("utf-8")
    return Response(status, body)


def error_response(error: ApiError) -> Response:
    return json_response({"error": error.code, "message": error.message}, error.status)


# -- query parameters -----------------------------------------------------------------------------
def _params(query: str, allowed: Iterable[str]) -> dict[str, str]:
    """Single-valued parameters; blank ones count as absent; an unknown or repeated one is a 400."""
    allowed = set(allowed)
    parsed = parse_qs(query, keep_blank_values=True)
    params: dict[str, str] = {}
    for name, values in parsed.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ApiError(400, "bad_parameter", f"unknown parameter {name!r} (known: {known})")
        if len(values) > 1:
            raise ApiError(400, "bad_parameter", f"parameter {name!r} given more than once")
        if values[0].strip():
            params[name] = values[0].strip()
    return params


def parse_since_param(text: str) -> datetime:
    """`24h`, `30m`, `7d`, `90s` or an ISO 8601 date/time (a `+` offset may arrive decoded as a space)."""
    from gateway.cli import parse_since

    candidates = [text]
    if " " in text:
        head, _, tail = text.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            return parse_since(candidate)
        except (argparse.ArgumentTypeError, ValueError):
            continue
    raise ApiError(400, "bad_parameter", f"since: not a duration (24h, 30m, 7d) or an ISO date: {text!r}")


def _limit(params: dict[str, str]) -> int:
    text = params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"\d{1,7}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, "bad_parameter", f"limit: an integer from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def _state(params: dict[str, str]) -> FlowState | None:
    if "state" not in params:
        return None
    try:
        return queries.parse_state(params["state"])
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"state: {exc}") from None


# -- the server -----------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a slow client
    app: MonitoringServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is not worth a traceback on stderr."""
        structlog.get_logger("gateway.monitoring").debug(
            "monitoring connection error", client=str(client_address[0]), exc_info=True
        )


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "gateway-monitoring"
    sys_version = ""
    timeout = 30  # seconds a client may take to send its request

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._answer(self.server.app.handle("GET", self.path, self.headers.get("Accept", "")))

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(self.server.app.handle("GET", self.path, self.headers.get("Accept", "")), body=False)

    def _not_allowed(self) -> None:
        response = error_response(ApiError(405, "method_not_allowed", "this API is read-only: use GET"))
        response.headers["Allow"] = "GET, HEAD"
        self._answer(response)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def _answer(self, response: Response, body: bool = True) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Requests are not logged line by line (Prometheus scrapes every few seconds)."""


class MonitoringServer:
    """Serves /metrics, health and the read-only JSON API in a daemon thread."""

    def __init__(
        self,
        config: MetricsConfig,
        store: Store,
        metrics: Metrics,
        health: Health,
        build_info: dict[str, str],
        *,
        rule_packs: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """`rule_packs`: (pack id, version) pairs for `gateway_rule_pack_info`; None = list the builtin
        packs once at start (pass `rule_pack_versions(data_dir.rules)` to include installed ones)."""
        self.config = config
        self.store = store
        self.metrics = metrics
        self.health = health
        self.build_info = dict(build_info)
        self._rule_packs = list(rule_packs) if rule_packs is not None else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._collector: StoreCollector | None = None
        self._openapi: bytes | None = None
        self.log = structlog.get_logger("gateway.monitoring")
        self._routes: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
            (re.compile(r"/metrics"), self._metrics),
            (re.compile(r"/healthz"), self._healthz),
            (re.compile(r"/readyz"), self._readyz),
            (re.compile(r"/api/openapi\.json"), self._openapi_doc),
            (re.compile(r"/api/flows"), self._flows),
            (re.compile(r"/api/flows/([^/]+)"), self._flow),
            (re.compile(r"/api/invoices"), self._invoices),
            (re.compile(r"/api/invoices/([^/]+)"), self._invoice),
            (re.compile(r"/api/stats"), self._stats),
            (re.compile(r"/"), self._index),
        ]

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port listened on (the real one when the config asked for 0), or the configured one."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self.config.port

    def start(self) -> None:
        if self._server is not None:
            return
        if not self.config.enabled:
            self.log.info("metrics server disabled by configuration")
            return
        packs = self._rule_packs if self._rule_packs is not None else rule_pack_versions(None)
        collector = StoreCollector(self.store, self.build_info, packs)
        self.metrics.registry.register(collector)
        server_class = _Server6 if ":" in self.config.host else _Server
        try:
            server = server_class((self.config.host, self.config.port), _Handler)
        except OSError as exc:
            self.metrics.registry.unregister(collector)
            raise ConfigError(
                f"metrics: cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None
        server.app = self
        self._collector = collector
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="monitoring-http", daemon=True
        )
        self._thread.start()
        self.log.info("monitoring server listening", host=self.config.host, port=self.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self._collector is not None:
            self.metrics.registry.unregister(self._collector)
            self._collector = None
        self.log.info("monitoring server stopped")

    # -- dispatch ---------------------------------------------------------------------------------
    def handle(self, method: str, target: str, accept: str = "") -> Response:
        """Answer one request (`target` is the raw path with its query); never raises."""
        try:
            parts = urlsplit(target)
            path = parts.path.rstrip("/") or "/"
            for pattern, view in self._routes:
                match = pattern.fullmatch(path)
                if match:
                    args = [unquote(g) for g in match.groups()]
                    return view(*args, query=parts.query, accept=accept)
            raise ApiError(404, "not_found", f"no such path: {path}")
        except ApiError as exc:
            return error_response(exc)
        except Exception:  # noqa: BLE001 - never a stack trace to the client: it goes to the log
            self.log.exception("monitoring request failed", method=method, path=target[:200])
            return error_response(ApiError(500, "internal_error", "internal error; see the gateway log"))

    # -- views ------------------------------------------------------------------------------------
    def _index(self, *, query: str, accept: str) -> Response:
        _params(query, ())
        return json_response(
            {
                "service": "gateway monitoring",
                "version": self.build_info.get("version", "unknown"),
                "endpoints": [
                    "/metrics", "/healthz", "/readyz", "/api/flows", "/api/flows/{id}", "/api/invoices",
                    "/api/invoices/{id}", "/api/stats", "/api/openapi.json",
                ],
            }
        )  # fmt: skip

    def _metrics(self, *, query: str, accept: str) -> Response:
        encoder, content_type = choose_encoder(accept)
        return Response(200, encoder(self.metrics.registry), content_type)

    def _healthz(self, *, query: str, accept: str) -> Response:
        return Response(200, b"ok\n", "text/plain; charset=utf-8")

    def _readyz(self, *, query: str, accept: str) -> Response:
        components = dict(self.health.components)
        try:
            database = bool(self.store.ping())
        except Exception as exc:  # noqa: BLE001 - not ready is an answer, not an error
            first_line = (str(exc).splitlines() or [""])[0]
            self.log.warning("readiness: database ping failed", error=f"{type(exc).__name__}: {first_line}")
            database = False
        components["database"] = database
        ready = self.health.ready and database
        body = {"status": "ready" if ready else "not ready", "components": dict(sorted(components.items()))}
        return json_response(body, 200 if ready else 503)

    def _openapi_doc(self, *, query: str, accept: str) -> Response:
        if self._openapi is None:
            document = json.loads(
                resources.files("gateway.telemetry").joinpath("openapi.json").read_text("utf-8")
            )
            document["info"]["version"] = self.build_info.get("version", document["info"]["version"])
            self._openapi = json.dumps(document, ensure_ascii=False).encode("utf-8")
        return Response(200, self._openapi)

    def _flows(self, *, query: str, accept: str) -> Response:
        params = _params(query, ("partner", "state", "since", "limit"))
        since = parse_since_param(params["since"]) if "since" in params else None
        limit = _limit(params)
        rows = queries.list_flows(
            self.store, partner=params.get("partner"), state=_state(params), since=since, limit=limit
        )
        return json_response({"count": len(rows), "limit": limit, "flows": rows})

    def _flow(self, flow_id: str, *, query: str, accept: str) -> Response:
        _params(query, ())
        detail = queries.get_flow_detail(self.store, flow_id) if len(flow_id) <= MAX_ID_LENGTH else None
        if detail is None:
            raise ApiError(404, "not_found", f"no flow {flow_id[:MAX_ID_LENGTH]!r}")
        return json_response(detail)

    def _invoices(self, *, query: str, accept: str) -> Response:
        params = _params(query, ("partner", "status", "number", "since", "limit"))
        since = parse_since_param(params["since"]) if "since" in params else None
        limit = _limit(params)
        rows = queries.list_invoices(
            self.store,
            partner=params.get("partner"),
            status=params.get("status"),
            number=params.get("number"),
            since=since,
            limit=limit,
        )
        return json_response({"count": len(rows), "limit": limit, "invoices": rows})

    def _invoice(self, invoice_id: str, *, query: str, accept: str) -> Response:
        _params(query, ())
        if not re.fullmatch(r"\d{1,18}", invoice_id):
            raise ApiError(400, "bad_parameter", f"invoice id: a positive integer, not {invoice_id[:40]!r}")
        invoice = queries.get_invoice(self.store, int(invoice_id))
        if invoice is None:
            raise ApiError(404, "not_found", f"no invoice {invoice_id}")
        return json_response(invoice)

    def _stats(self, *, query: str, accept: str) -> Response:
        params = _params(query, ("since",))
        since = parse_since_param(params.get("since", DEFAULT_STATS_PERIOD))
        return json_response(queries.stats(self.store, since))
