"""The monitoring HTTP server on the metrics port: /metrics, /healthz, /readyz and a read-only JSON API.

Served by uvicorn (asyncio, one event loop, a listen backlog of 2048) with a Starlette app: a thousand
concurrent clients cost coroutines, not threads, and /healthz is answered on the event loop so it never
waits behind slow scrapes. Work that touches the database runs in the loop's thread pool. The port is
not authenticated: keep it on loopback (another address is accepted, with a warning).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from gateway.config import MetricsConfig
from gateway.errors import ConfigError
from gateway.statemachine import FlowState
from gateway.store import queries
from gateway.store.db import Store
from gateway.telemetry.collectors import StoreCollector, rule_pack_versions
from gateway.telemetry.metrics import Metrics
from gateway.timeparse import parse_since

if TYPE_CHECKING:
    from gateway.api.server import UvicornThread
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


# -- the ASGI application --------------------------------------------------------------------------
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
STANDARD_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def to_starlette(response: Response) -> StarletteResponse:
    return StarletteResponse(
        response.body,
        response.status,
        headers={**STANDARD_HEADERS, **response.headers},
        media_type=response.content_type,
    )


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
        self._http: UvicornThread | None = None
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
        if self._http is not None:
            return self._http.port
        return self.config.port

    def asgi_app(self) -> Starlette:
        """Starlette app: /healthz answered on the event loop, everything else in the thread pool."""

        async def endpoint(request: Request) -> StarletteResponse:
            if request.method not in ("GET", "HEAD"):
                response = error_response(
                    ApiError(405, "method_not_allowed", "this API is read-only: use GET")
                )
                response.headers["Allow"] = "GET, HEAD"
                return to_starlette(response)
            if request.url.path == "/healthz":  # liveness never waits behind slow requests
                return to_starlette(self._healthz(query="", accept=""))
            target = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
            if request.url.query:
                target += "?" + request.url.query
            accept = request.headers.get("accept", "")
            return to_starlette(await run_in_threadpool(self.handle, "GET", target, accept))

        return Starlette(routes=[Route("/{path:path}", endpoint, methods=ALL_METHODS)])

    def start(self) -> None:
        if self._http is not None:
            return
        if not self.config.enabled:
            self.log.info("metrics server disabled by configuration")
            return
        from gateway.api.server import UvicornThread

        packs = self._rule_packs if self._rule_packs is not None else rule_pack_versions(None)
        collector = StoreCollector(self.store, self.build_info, packs)
        self.metrics.registry.register(collector)
        http = UvicornThread(self.asgi_app(), name="metrics", host=self.config.host, port=self.config.port)
        try:
            http.start()
        except ConfigError:
            self.metrics.registry.unregister(collector)
            raise
        self._collector = collector
        self._http = http
        self.log.info("monitoring server listening", host=self.config.host, port=self.port)

    def stop(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        http.stop()
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
