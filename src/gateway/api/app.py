"""The partner/operator ASGI application (BRIEF interface 6): AFNOR Flow Service 1.3.0 under `/v1`.

Operations (flow-service-1.3.0.json, served as the standard describes them):
  POST   /v1/flows               deposit (multipart `file` + `flowInfo`): the same intake as a dropped file;
                                 202 with the flow id once the flow is durable
  GET    /v1/flows/{flowId}      the Flow resource (status, acknowledgement, reason codes); `docType=Original`
                                 the file as received, `docType=Acknowledgement` (gateway extension) the ack
  POST   /v1/flows/search        criteria + cursor paging over the partner's own flows
  GET    /v1/webhooks            the partner's webhooks;  POST: register one (signing key shown once)
  DELETE /v1/webhooks/{id}       unregister
  GET    /v1/healthcheck         200 while the service and its database answer (no token needed)
Every other answer is the standard's `Error` object (`errorCode`, `errorMessage`): 400 bad request,
401 missing or unknown token, 403 partner disabled / other organisation, 404 unknown (or another
partner's) flow, 413 body larger than `intake.max_flow_bytes`, 422 `ChecksumMismatch`, 429 rate limit,
500 without detail (the detail goes to the log), 503 database down.

The console (`gateway.console`, another package) is mounted under `/console` by `console_mount()` when
that package is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import insert, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import resources, tokens, webhooks
from gateway.api.ratelimit import RateLimiter
from gateway.api.spec import FlowServiceSpec
from gateway.config import GatewayConfig
from gateway.runtime.intake import TakenFlow, safe_claim_name
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.models import ApiFlowInfoRow, FlowRow, OutboxRow

JSON_BODY_LIMIT = 1_000_000  # search and webhook requests
MULTIPART_OVERHEAD = 1_000_000  # flowInfo and part headers on top of the file itself
MAX_FLOW_INFO_BYTES = 64_000
MAX_HEADER_ID = 64
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DOC_TYPES = ("Metadata", "Original", "Converted", "ReadableView", "Acknowledgement")
STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "MISSING_TOKEN",
    403: "FORBIDDEN_ACCESS",
    404: "MISSING_RESOURCE",
    405: "METHOD_NOT_ALLOWED",
    413: "FILE_SIZE_EXCEEDED",
    422: "UNPROCESSABLE_ENTITY",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "RESOURCE_ERROR",
}


class BytesIntake(Protocol):
    def take_bytes(self, partner: str, data: bytes, filename: str, source: str) -> TakenFlow: ...


@dataclass
class ApiContext:
    """What the application needs, built in the composition root (no module state)."""

    config: GatewayConfig
    store: Store
    intake: BytesIntake
    blobs: BlobStore
    ack_dir: Callable[[str], Path]  # partner id → its out/ folder (where acknowledgements are written)
    spec: FlowServiceSpec = field(default_factory=FlowServiceSpec)
    extra: dict[str, Any] = field(default_factory=dict)  # for mounted parts (console): their own objects


class ApiProblem(Exception):
    """An answer in the standard's Error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class BodyTooLarge(Exception):
    """A body over its route's limit: 413 for a deposit; 400 elsewhere (the standard documents 413 only
    for POST /v1/flows)."""

    def __init__(self, limit: int, deposit: bool) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.status = 413 if deposit else 400
        self.code = "FILE_SIZE_EXCEEDED" if deposit else "REQUEST_TOO_LARGE"


def problem_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"errorCode": code, "errorMessage": message}, status, headers=headers)


# -- body limits and common headers (pure ASGI: nothing is buffered here) ----------------------------
class BodyLimit:
    """Refuses bodies over the limit of their route: at once when Content-Length says so, else while
    they stream (the endpoint turns `BodyTooLarge` into 413); echoes `Request-Id`; no caching."""

    def __init__(self, app: ASGIApp, flow_limit: int) -> None:
        self.app = app
        self.flow_limit = flow_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        deposit = scope["path"] == "/v1/flows"
        limit = self.flow_limit + MULTIPART_OVERHEAD if deposit else JSON_BODY_LIMIT
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("request-id", "")
        extra: list[tuple[bytes, bytes]] = [
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if request_id and len(request_id) <= MAX_HEADER_ID and request_id.isprintable():
            extra.append((b"request-id", request_id.encode("latin-1")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            refused = BodyTooLarge(limit, deposit)
            response = problem_response(refused.status, refused.code, str(refused))
            await response(scope, receive, send_with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, deposit)
            return message

        await self.app(scope, limited_receive, send_with_headers)


# -- the application ----------------------------------------------------------------------------------
class FlowServiceApi:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.api = ctx.config.api
        self.max_flow_bytes = ctx.config.intake.max_flow_bytes
        self.limiter = RateLimiter(self.api.rate_limit_per_second, self.api.rate_limit_burst)
        self.failures = RateLimiter(0.2, 20)  # failed authentications per client address (12 a minute)
        self.log = structlog.get_logger("gateway.api")

    # -- plumbing ------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/flows", self._guard(self.create_flow), methods=["POST"]),
            Route("/v1/flows/search", self._guard(self.search_flows), methods=["POST"]),
            Route("/v1/flows/{flowId:path}", self._guard(self.get_flow), methods=["GET"]),
            Route("/v1/webhooks", self._guard(self.list_webhooks), methods=["GET"]),
            Route("/v1/webhooks", self._guard(self.create_webhook), methods=["POST"]),
            Route("/v1/webhooks/{webhookUid:path}", self._guard(self.delete_webhook), methods=["DELETE"]),
            Route("/v1/healthcheck", self._guard(self.healthcheck), methods=["GET"]),
        ]

    def _guard(
        self, view: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await view(request)
            except ApiProblem as exc:
                return problem_response(exc.status, exc.code, exc.message, exc.headers)
            except BodyTooLarge as exc:
                return problem_response(exc.status, exc.code, str(exc))

        return endpoint

    async def _partner(self, request: Request) -> str:
        """The partner of the request's bearer token, rate-limited per token (401 / 403 / 429)."""
        client = request.client.host if request.client else "-"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(401, "MISSING_TOKEN", "an Authorization: Bearer token is required",
                             {"WWW-Authenticate": "Bearer"})  # fmt: skip
        partner = await run_in_threadpool(self._lookup, token)
        if partner is None:
            wait = self.failures.allow(f"auth:{client}")
            if wait:
                raise ApiProblem(429, "TOO_MANY_REQUESTS", "too many failed authentications",
                                 {"Retry-After": str(int(wait) + 1)})  # fmt: skip
            raise ApiProblem(401, "INVALID_TOKEN", "unknown or revoked token",
                             {"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
        wait = self.limiter.allow(tokens.token_hash(token))
        if wait:
            raise ApiProblem(429, "TOO_MANY_REQUESTS", "rate limit of this token reached",
                             {"Retry-After": str(int(wait) + 1)})  # fmt: skip
        known = self.ctx.config.partners.get(partner)
        if known is None or not known.enabled:
            raise ApiProblem(403, "FORBIDDEN_ACCESS", "this partner is not enabled")
        organization = request.headers.get("organization-id")
        if organization and organization != partner:
            raise ApiProblem(403, "FORBIDDEN_ACCESS", "Organization-Id is not the token's partner")
        return partner

    def _lookup(self, token: str) -> str | None:
        with self.ctx.store.reader() as conn:
            return tokens.partner_for_token(conn, token)

    async def _json_body(self, request: Request, schema: str) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiProblem(400, "INVALID_JSON", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiProblem(400, "INVALID_REQUEST", "the body must be a JSON object")
        errors = self.ctx.spec.errors(schema, body)
        if errors:
            raise ApiProblem(400, "INVALID_REQUEST", "; ".join(errors[:5]))
        return body

    # -- flows ---------------------------------------------------------------------------------------
    async def create_flow(self, request: Request) -> Response:
        partner = await self._partner(request)
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiProblem(400, "INVALID_REQUEST", "send multipart/form-data with parts file and flowInfo")
        async with request.form(max_files=2, max_fields=10) as form:
            files = form.getlist("file")
            infos = form.getlist("flowInfo")
            if len(files) != 1 or not isinstance(files[0], UploadFile):
                raise ApiProblem(
                    400, "MISSING_REQUIRED_FIELD", "exactly one file part named 'file' is required"
                )
            if len(infos) != 1:
                raise ApiProblem(
                    400, "MISSING_REQUIRED_FIELD", "exactly one part named 'flowInfo' is required"
                )
            info = await self._flow_info(infos[0])
            upload = files[0]
            data = await upload.read(self.max_flow_bytes + 1)
        if len(data) > self.max_flow_bytes:
            raise ApiProblem(413, "FILE_SIZE_EXCEEDED", f"the file is over {self.max_flow_bytes} bytes")
        digest = hashlib.sha256(data).hexdigest()
        if info.get("sha256") and info["sha256"] != digest:
            raise ApiProblem(
                422, "ChecksumMismatch", "sha256 of the received file differs from flowInfo.sha256"
            )
        request_id = request.headers.get("request-id", "")[:MAX_HEADER_ID] or None
        answer = await run_in_threadpool(self._take, partner, data, info, request_id)
        answer["sha256"] = digest
        return JSONResponse(answer, 202)

    async def _flow_info(self, part: UploadFile | str) -> dict[str, Any]:
        raw: bytes | str
        if isinstance(part, UploadFile):
            raw = await part.read(MAX_FLOW_INFO_BYTES + 1)
        else:
            raw = part
        if len(raw) > MAX_FLOW_INFO_BYTES:
            raise ApiProblem(400, "INVALID_REQUEST", "flowInfo is too large")
        try:
            info = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiProblem(400, "INVALID_REQUEST", "flowInfo is not JSON") from None
        if not isinstance(info, dict):
            raise ApiProblem(400, "INVALID_REQUEST", "flowInfo must be a JSON object")
        errors = self.ctx.spec.errors("FlowInfo", info)
        if errors:
            raise ApiProblem(400, "INVALID_REQUEST", "flowInfo: " + "; ".join(errors[:5]))
        return info

    def _take(
        self, partner: str, data: bytes, info: dict[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        """Intake (durable when it returns), then the declared information; the flow id once both are."""
        name = str(info["name"])
        taken = self.ctx.intake.take_bytes(partner, data, safe_claim_name(name), "api")
        with self.ctx.store.transaction() as conn:
            conn.execute(
                insert(ApiFlowInfoRow).values(
                    flow_id=taken.flow_id,
                    partner=partner,
                    tracking_id=info.get("trackingId"),
                    name=name[: resources.NAME_MAX],
                    flow_syntax=info["flowSyntax"],
                    flow_profile=info.get("flowProfile"),
                    processing_rule=info.get("processingRule"),
                    request_id=request_id,
                )
            )
            received = conn.execute(
                select(FlowRow.received_at).where(FlowRow.id == taken.flow_id)
            ).scalar_one()
        self.log.info("flow posted", flow_id=taken.flow_id, partner=partner, size=taken.size,
                      duplicate_of=taken.duplicate_of, request_id=request_id)  # fmt: skip
        answer: dict[str, Any] = {
            "flowId": taken.flow_id,
            "submittedAt": resources.iso(received),
            "name": name,
            "flowSyntax": info["flowSyntax"],
        }
        for key in ("trackingId", "processingRule", "flowProfile"):
            if info.get(key):
                answer[key] = info[key]
        return answer

    async def get_flow(self, request: Request) -> Response:
        partner = await self._partner(request)
        flow_id = request.path_params["flowId"]
        doc_type = request.query_params.get("docType", "Metadata")
        if doc_type not in DOC_TYPES:
            raise ApiProblem(400, "INVALID_REQUEST", f"docType: one of {', '.join(DOC_TYPES)}")
        if len(flow_id) > 64:
            raise ApiProblem(400, "INVALID_REQUEST", "flowId: at most 64 characters")
        found = await run_in_threadpool(self._read_flow, partner, flow_id)
        if found is None:
            raise ApiProblem(404, "MISSING_RESOURCE", "no such flow")
        resource, flow = found
        if doc_type == "Metadata":
            return JSONResponse(resource)
        if doc_type == "Original":
            path = self.ctx.blobs.path_for(flow["sha256"]) if flow.get("sha256") else None
            return self._file(path, resource["name"], "the file was not kept (refused before storage)")
        if doc_type == "Acknowledgement":
            name = flow.get("ack_name") or ""
            stored = await run_in_threadpool(self._stored_ack, flow_id, name) if name else None
            if stored is not None:  # the acknowledgement of record as enqueued, even once fetched from out/
                return Response(
                    stored, media_type="application/octet-stream", headers=self._disposition(name)
                )
            ack = self.ctx.ack_dir(partner) / name if name else None
            return self._file(ack, name, "no acknowledgement (yet, or already fetched)")
        raise ApiProblem(404, "MISSING_RESOURCE", f"no {doc_type} document is kept for flows")

    def _read_flow(self, partner: str, flow_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self.ctx.store.reader() as conn:
            return resources.get_flow(conn, partner, flow_id)

    def _stored_ack(self, flow_id: str, name: str) -> bytes | None:
        """The acknowledgement's payload kept in the outbox (inline), if the outbox holds it."""
        with self.ctx.store.reader() as conn:
            payload = conn.execute(
                select(OutboxRow.payload)
                .where(OutboxRow.kind == "ack", OutboxRow.flow_id == flow_id, OutboxRow.remote_name == name)
                .order_by(OutboxRow.id.desc())
                .limit(1)
            ).scalar()
        return bytes(payload) if payload is not None else None

    @staticmethod
    def _disposition(name: str) -> dict[str, str]:
        ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name)
        return {"Content-Disposition": f'attachment;filename="{ascii_name or "flow"}"'}

    def _file(self, path: Path | None, name: str, missing: str) -> Response:
        if path is None or not path.is_file():
            raise ApiProblem(404, "MISSING_RESOURCE", missing)
        return FileResponse(path, media_type="application/octet-stream", headers=self._disposition(name))

    async def search_flows(self, request: Request) -> Response:
        partner = await self._partner(request)
        params = await self._json_body(request, "SearchFlowParams")
        try:
            answer = await run_in_threadpool(self._search, partner, params)
        except resources.SearchError as exc:
            raise ApiProblem(400, "INVALID_REQUEST", str(exc)) from None
        return JSONResponse(answer)

    def _search(self, partner: str, params: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.store.reader() as conn:
            return resources.search_flows(conn, partner, params)

    # -- webhooks ------------------------------------------------------------------------------------
    async def list_webhooks(self, request: Request) -> Response:
        partner = await self._partner(request)
        hooks = await run_in_threadpool(self._webhooks, partner)
        listed = [h.resource() for h in hooks]
        return JSONResponse({"count": len(listed), "webhookIds": [h.id for h in hooks], "webhooks": listed})

    def _webhooks(self, partner: str) -> list[webhooks.Webhook]:
        with self.ctx.store.reader() as conn:
            return webhooks.list_webhooks(conn, partner)

    async def create_webhook(self, request: Request) -> Response:
        partner = await self._partner(request)
        params = await self._json_body(request, "WebhookParams")
        try:
            hook = await run_in_threadpool(self._create_webhook, partner, params)
        except webhooks.WebhookError as exc:
            raise ApiProblem(400, "INVALID_REQUEST", str(exc)) from None
        self.log.info("webhook registered", partner=partner, webhook=hook.id, url=hook.callback_url)
        created = hook.resource(with_key=True)
        return JSONResponse({k: created[k] for k in ("webhookId", "signingKey", "createdAt")}, 201)

    def _create_webhook(self, partner: str, params: dict[str, Any]) -> webhooks.Webhook:
        with self.ctx.store.transaction() as conn:
            return webhooks.create_webhook(
                conn,
                partner,
                params,
                max_per_partner=self.api.max_webhooks_per_partner,
                https_only=self.api.webhook_https_only,
                allow_private=self.api.webhook_allow_private_networks,
            )

    async def delete_webhook(self, request: Request) -> Response:
        partner = await self._partner(request)
        uid = request.path_params["webhookUid"]
        if not UUID_RE.match(uid):
            raise ApiProblem(400, "INVALID_REQUEST", "webhookUid: a UUID")
        deleted = await run_in_threadpool(self._delete_webhook, partner, uid.lower())
        if not deleted:
            raise ApiProblem(404, "MISSING_RESOURCE", "no such webhook")
        self.log.info("webhook deleted", partner=partner, webhook=uid)
        return Response(status_code=204)

    def _delete_webhook(self, partner: str, uid: str) -> bool:
        with self.ctx.store.transaction() as conn:
            return webhooks.delete_webhook(conn, partner, uid)

    # -- supervision ---------------------------------------------------------------------------------
    async def healthcheck(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.ctx.store.ping)
        except Exception as exc:  # noqa: BLE001 - unavailable is an answer
            self.log.warning("healthcheck: database ping failed", error=type(exc).__name__)
            raise ApiProblem(503, "RESOURCE_ERROR", "the database does not answer") from None
        return Response(status_code=200)


# -- error handlers -----------------------------------------------------------------------------------
async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = STATUS_CODES.get(exc.status_code, "ERROR")
    headers = dict(exc.headers or {})
    return problem_response(exc.status_code, code, str(exc.detail), headers or None)


def _internal_error(log: Any) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        log.error("api request failed", method=request.method, path=request.url.path[:200],
                  error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)  # fmt: skip
        return problem_response(500, "INTERNAL_ERROR", "internal error; see the gateway log")

    return handler


def console_mount(ctx: ApiContext) -> list[BaseRoute]:
    """Hook for the console: when the `gateway.console` package exists, its `console_routes(ctx)` are
    mounted under /console (sessions, pages and its own auth are the console's business)."""
    if importlib.util.find_spec("gateway.console") is None:
        return []
    console = importlib.import_module("gateway.console")
    make_routes = getattr(console, "console_routes", None)
    if make_routes is None:
        return []
    return [Mount("/console", routes=list(make_routes(ctx)))]


def build_api_app(ctx: ApiContext) -> ASGIApp:
    """The Starlette application of the `[api]` listener, wrapped in the body limit."""
    api = FlowServiceApi(ctx)
    app = Starlette(
        routes=[*api.routes(), *console_mount(ctx)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error(api.log)},
    )
    app.state.flow_service = api
    app.state.context = ctx
    return BodyLimit(app, ctx.config.intake.max_flow_bytes)
