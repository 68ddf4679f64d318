"""The operators' web console: server-rendered pages and the few actions operators take (issue 22).

`console_routes(store, config, data_dir)` — or `console_routes(ctx)` with the API application's context
(store, config, blobs, ack_dir; `ctx.extra["data_dir"]` names the data dir for the rule-pack page) —
returns Starlette routes to mount under `/console`; `console_app(...)` wraps them in a Starlette app of
their own (tests, or a console without the Flow Service). Links are built from the mount point
(`root_path`), so any prefix works.

Every page needs a signed-in operator. Actions (POST) need a session AND the session's CSRF token;
replay and resend need the admin role. Every action, allowed or refused, is audited.
"""

from __future__ import annotations

import hmac
import html
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from lxml import etree
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.config import GatewayConfig
from gateway.console.accounts import ADMIN, Accounts, LoginLimiter, Operator, Session
from gateway.console.labels import LABELS, label, pick_language, word
from gateway.datadir import DataDir
from gateway.statemachine import FlowState
from gateway.store import queries
from gateway.store.blobs import BlobStore
from gateway.store.db import Store, utcnow
from gateway.store.models import InvoiceRow
from gateway.store.outbox import resend as outbox_resend

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "gateway_console"
LOGIN_COOKIE = "gateway_console_login"
LANG_COOKIE = "gateway_console_lang"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
RESENDABLE = ("sent", "dead")  # outbox states a resend applies to (store/outbox.py)
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def _fmt_time(value: object) -> str:
    """Datetimes (or ISO strings) as `YYYY-MM-DD HH:MM:SS` UTC; anything else as text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo is not None else value
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _parse_day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def read_ack(data: bytes | None) -> dict[str, Any] | None:
    """An acknowledgement parsed for display: its main fields, details and the XML text."""
    if data is None:
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return {"xml": data.decode("utf-8", "replace"), "fields": {}, "details": []}
    ns = {"a": etree.QName(root).namespace or ""}
    fields = {
        key: root.findtext(f"a:{key}", namespaces=ns)
        for key in ("FlowId", "Status", "FlowStatus", "IssuedAt", "Syntax")
    }
    details = [
        {
            "level": d.get("level"),
            "item": d.get("item"),
            "code": d.findtext("a:ReasonCode", namespaces=ns),
            "message": d.findtext("a:ReasonMessage", namespaces=ns),
        }
        for d in root.findall("a:Details/a:Detail", namespaces=ns)
    ]
    return {"xml": data.decode("utf-8", "replace"), "fields": fields, "details": details}


@dataclass
class Console:
    store: Store
    config: GatewayConfig
    blobs: BlobStore
    ack_dir: Callable[[str], Path]  # partner id → the folder its acknowledgements are written to
    rules_dir: Path | None  # installed rule packs (None: the builtin ones only)
    accounts: Accounts
    limiter: LoginLimiter
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.autoescape = True
        env.filters["dt"] = _fmt_time
        env.globals["LABELS"] = LABELS

    @property
    def settings(self) -> Any:
        return self.config.console

    # -- plumbing ---------------------------------------------------------------------------------
    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def lang(self, request: Request) -> str:
        return pick_language(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
        )

    def session(self, request: Request) -> Session | None:
        return self.accounts.session(request.cookies.get(SESSION_COOKIE))

    def secure(self, request: Request) -> bool:
        return bool(self.settings.secure_cookie == "always" or request.url.scheme == "https")

    def cookie_path(self, request: Request) -> str:
        return self.base(request) or "/"

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        lang = self.lang(request)
        tables = queries.optional_tables(self.store)
        context.update(
            request=request,
            base=self.base(request),
            lang=lang,
            t=lambda kind, code: label(kind, code, lang),
            other=lambda kind, code: label(kind, code, "en" if lang == "fr" else "fr"),
            w=lambda key: word(key, lang),
            session=session,
            operator=session.operator if session else None,
            csrf=session.csrf_token if session else "",
            tables=tables,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        )
        response = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        self._harden(response)
        if request.query_params.get("lang") in ("en", "fr"):
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path=self.cookie_path(request),
                                samesite="strict", secure=self.secure(request), httponly=True)  # fmt: skip
        return response

    @staticmethod
    def _harden(response: Response) -> None:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{self.base(request)}/login?next={quote(target)}", status_code=303)

    def refuse(self, request: Request, status_code: int, why: str) -> Response:
        response = HTMLResponse(
            f"<!doctype html><title>Refused</title><p>{status_code}: {html.escape(why)}</p>"
            f'<p><a href="{html.escape(self.base(request))}/flows">Back to the console</a></p>',
            status_code=status_code,
        )
        self._harden(response)
        return response

    # -- sign-in ----------------------------------------------------------------------------------
    def login_page(self, request: Request, error: str | None = None, status_code: int = 200) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(
            request, "login.html", None, status_code=status_code, login_csrf=nonce, error=error,
            next=request.query_params.get("next", ""),
        )  # fmt: skip
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path=self.cookie_path(request), httponly=True,
                            samesite="strict", secure=self.secure(request))  # fmt: skip
        return response

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self.login_page, request)
        form = await request.form()
        name = str(form.get("name", ""))[:64]
        password = str(form.get("password", ""))[:1024]
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        client = _client(request)
        if not nonce or not hmac.compare_digest(nonce, str(form.get("csrf_token", ""))):
            await run_in_threadpool(self.accounts.audit, name or None, "sign-in", None, "refused",
                                    "missing or wrong sign-in form token", client)  # fmt: skip
            return self.refuse(request, 403, "the sign-in form token is missing or wrong; reload the page")
        keys = (f"client:{client}", f"name:{name.lower()}")
        if self.limiter.blocked(*keys):
            await run_in_threadpool(self.accounts.audit, name or None, "sign-in", None, "refused",
                                    "too many failed sign-ins", client)  # fmt: skip
            return await run_in_threadpool(
                self.login_page, request, "Too many failed sign-ins; wait a few minutes.", 429
            )
        operator = await run_in_threadpool(self.accounts.verify, name, password)
        if operator is None:
            self.limiter.failed(*keys)
            await run_in_threadpool(self.accounts.audit, name or None, "sign-in", None, "refused",
                                    "wrong name or password", client)  # fmt: skip
            return await run_in_threadpool(self.login_page, request, "Wrong name or password.", 401)
        self.limiter.succeeded(keys[1])  # the address keeps its count: one known account resets nothing
        session = await run_in_threadpool(self.accounts.open_session, operator, self.settings.session_hours)
        await run_in_threadpool(self.accounts.audit, operator.name, "sign-in", None, "ok", None, client)
        target = str(form.get("next", ""))
        base = self.base(request)
        if not (target.startswith(base + "/") and not target.startswith("//") and "\\" not in target):
            target = f"{base}/flows"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session.token, max_age=int(self.settings.session_hours * 3600),
                            path=self.cookie_path(request), httponly=True, samesite="strict",
                            secure=self.secure(request))  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE, path=self.cookie_path(request))
        return response

    async def logout(self, request: Request) -> Response:
        session, refused = await self._action_guard(request, "sign-out", None, admin=False)
        if refused is not None:
            return refused
        assert session is not None
        await run_in_threadpool(self.accounts.close_session, session.token)
        await run_in_threadpool(self.accounts.audit, session.operator.name, "sign-out", None, "ok", None,
                                _client(request))  # fmt: skip
        response = RedirectResponse(f"{self.base(request)}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=self.cookie_path(request))
        return response

    async def _action_guard(
        self, request: Request, action: str, target: str | None, *, admin: bool = True
    ) -> tuple[Session | None, Response | None]:
        """The session of a POST, or the refusal: no session (401), no/wrong CSRF token or role (403)."""
        client = _client(request)
        session = await run_in_threadpool(self.session, request)
        form = await request.form()
        if session is None:
            await run_in_threadpool(
                self.accounts.audit, None, action, target, "refused", "not signed in", client
            )
            return None, self.refuse(request, 401, "sign in first")
        sent = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
        if not sent or not hmac.compare_digest(sent, session.csrf_token):
            await run_in_threadpool(self.accounts.audit, session.operator.name, action, target, "refused",
                                    "missing or wrong CSRF token", client)  # fmt: skip
            return None, self.refuse(request, 403, "missing or wrong CSRF token; reload the page")
        if admin and session.operator.role != ADMIN:
            await run_in_threadpool(self.accounts.audit, session.operator.name, action, target, "refused",
                                    f"role {session.operator.role}", client)  # fmt: skip
            return None, self.refuse(request, 403, "your role may look but not act")
        return session, None

    # -- pages ------------------------------------------------------------------------------------
    def page(self, handler: Callable[[Request, Session], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            session = self.session(request)
            if session is None:
                return self.to_login(request)
            return handler(request, session)

        return endpoint

    def home(self, request: Request) -> Response:
        return RedirectResponse(f"{self.base(request)}/flows", status_code=303)

    def flows(self, request: Request, session: Session) -> Response:
        q = request.query_params
        errors: list[str] = []
        state = None
        if q.get("state"):
            try:
                state = queries.parse_state(q["state"])
            except ValueError as exc:
                errors.append(str(exc))
        start, end = _parse_day(q.get("from")), _parse_day(q.get("to"))
        for key, value in (("from", start), ("to", end)):
            if q.get(key) and value is None:
                errors.append(f"{key}: not a date (YYYY-MM-DD): {q[key]!r}")
        rows = queries.console_flows(
            self.store,
            partner=q.get("partner") or None,
            state=state,
            reason=q.get("reason") or None,
            received_from=_day_start(start) if start else None,
            received_to=_day_start(end) + timedelta(days=1) if end else None,
            limit=self.settings.page_size,
        )
        return self.render(
            request, "flows.html", session, rows=rows, filters=dict(q), errors=errors,
            choices=queries.flow_filter_values(self.store), states=[s.value for s in FlowState],
            backlog=queries.backlog(self.store),
        )  # fmt: skip

    def backlog(self, request: Request) -> Response:
        if self.session(request) is None:
            return self.refuse(request, 401, "sign in first")
        return self.render(request, "_backlog.html", None, backlog=queries.backlog(self.store))

    def flow(self, request: Request, session: Session) -> Response:
        flow_id = request.path_params["flow_id"]
        detail = queries.get_flow_detail(self.store, flow_id)
        if detail is None:
            return self.render(request, "missing.html", session, status_code=404, what=f"flow {flow_id}")
        flow = detail["flow"]
        ack = read_ack(self._ack_bytes(flow))
        events = detail["events"]
        previous = None
        for event in events:
            event["since_previous_ms"] = (
                (event["at"] - previous).total_seconds() * 1000 if previous is not None else None
            )
            previous = event["at"]
        original = self._original_path(flow)
        return self.render(
            request, "flow.html", session, flow=flow, events=events, invoices=detail["invoices"], ack=ack,
            ack_name=flow.get("ack_name"), original_available=bool(original and original.exists()),
            deliveries=queries.deliveries(self.store, flow_id=flow_id), done=request.query_params.get("done"),
        )  # fmt: skip

    def invoices(self, request: Request, session: Session) -> Response:
        q = request.query_params
        rows = queries.console_invoices(
            self.store,
            status=q.get("status") or None,
            recipient=q.get("recipient") or None,
            number=q.get("number") or None,
            partner=q.get("partner") or None,
            limit=self.settings.page_size,
        )
        return self.render(
            request, "invoices.html", session, rows=rows, filters=dict(q),
            statuses=list(LABELS["invoice"]), choices=queries.flow_filter_values(self.store),
            lifecycle="lifecycle_status" in InvoiceRow.__table__.c,
        )  # fmt: skip

    def invoice(self, request: Request, session: Session) -> Response:
        try:
            invoice_id = int(request.path_params["invoice_id"])
        except ValueError:
            return self.render(request, "missing.html", session, status_code=404, what="this invoice")
        invoice = queries.get_invoice(self.store, invoice_id)
        if invoice is None:
            return self.render(
                request, "missing.html", session, status_code=404, what=f"invoice {invoice_id}"
            )
        report = invoice.get("report") or {}
        return self.render(
            request, "invoice.html", session, invoice=invoice, summary=invoice.get("summary") or {},
            findings=report.get("findings", []) if isinstance(report, dict) else [],
            layers=report.get("layers", []) if isinstance(report, dict) else [],
            lifecycle=queries.invoice_lifecycle(self.store, invoice_id),
            deliveries=queries.deliveries(self.store, invoice_id=invoice_id),
            done=request.query_params.get("done"),
        )  # fmt: skip

    def rejections(self, request: Request, session: Session) -> Response:
        q = request.query_params
        now = utcnow()
        period = q.get("period") or "7d"
        start, end = _parse_day(q.get("from")), _parse_day(q.get("to"))
        if start or end:
            period = "custom"
            since = _day_start(start) if start else now - PERIODS["7d"]
            until = _day_start(end) + timedelta(days=1) if end else now
        else:
            period = period if period in PERIODS else "7d"
            since, until = now - PERIODS[period], now
        data = queries.rejections(self.store, since, until, partner=q.get("partner") or None)
        return self.render(
            request, "rejections.html", session, data=data, period=period, periods=list(PERIODS),
            filters=dict(q), choices=queries.flow_filter_values(self.store),
        )  # fmt: skip

    def partners(self, request: Request, session: Session) -> Response:
        activity = queries.partner_activity(self.store)
        rows = []
        for pid in sorted(set(self.config.partners) | set(activity)):
            conf = self.config.partners.get(pid)
            rows.append(
                {
                    "id": pid,
                    "name": conf.name if conf else "",
                    "configured": conf is not None,
                    "enabled": bool(conf and conf.enabled),
                    "sftp": bool(conf and conf.sftp),
                    "activity": activity.get(pid, {"flows": 0, "last_received_at": None, "by_state": {}}),
                }
            )
        return self.render(
            request, "partners.html", session, rows=rows, directory=queries.directory_entries(self.store)
        )

    def rules(self, request: Request, session: Session) -> Response:
        from gateway.validation.rulepacks import RulePackRegistry

        registry = RulePackRegistry(self.rules_dir)
        packs = [p.to_dict() for p in registry.list()]
        return self.render(
            request, "rules.html", session, packs=packs, problems=[str(p) for p in registry.problems]
        )

    def audit(self, request: Request, session: Session) -> Response:
        return self.render(request, "audit.html", session, rows=queries.operator_audit(self.store, 300))

    # -- downloads --------------------------------------------------------------------------------
    def _ack_path(self, flow: Mapping[str, Any]) -> Path | None:
        name = str(flow.get("ack_name") or "")
        if not name or Path(name).name != name or name in (".", ".."):
            return None
        return self.ack_dir(str(flow["partner"])) / name

    def _original_path(self, flow: Mapping[str, Any]) -> Path | None:
        sha = flow.get("sha256") or ""
        return self.blobs.path_for(sha) if SHA256.match(sha) else None

    def _ack_bytes(self, flow: Mapping[str, Any]) -> bytes | None:
        """The acknowledgement of record: as the outbox keeps it, else the file in the partner's out/."""
        name = str(flow.get("ack_name") or "")
        if not name:
            return None
        stored = queries.stored_ack(self.store, str(flow["id"]), name)
        if stored is not None:
            if stored["payload"] is not None:
                return bytes(stored["payload"])
            sha = str(stored["payload_sha256"] or "")
            if SHA256.match(sha) and self.blobs.path_for(sha).is_file():
                return self.blobs.read(sha)
        path = self._ack_path(flow)
        try:
            return path.read_bytes() if path is not None else None
        except OSError:  # fetched (and deleted) by the partner
            return None

    def download(self, request: Request, session: Session) -> Response:
        flow_id = request.path_params["flow_id"]
        what = request.path_params["what"]
        detail = queries.get_flow_detail(self.store, flow_id)
        client = _client(request)
        if detail is None or what not in ("original", "ack"):
            return self.render(request, "missing.html", session, status_code=404, what=f"flow {flow_id}")
        flow = detail["flow"]
        response: Response | None = None
        if what == "ack":
            data = self._ack_bytes(flow)
            if data is not None:
                name = str(flow["ack_name"])
                response = Response(data, media_type="application/xml" if name.endswith(".xml") else None)
                response.headers["content-disposition"] = f"attachment; filename*=utf-8''{quote(name)}"
        else:
            path = self._original_path(flow)
            if path is not None and path.is_file():
                filename = Path(flow["filename"]).name or "original"
                response = FileResponse(path, media_type="application/octet-stream", filename=filename)
        if response is None:
            self.accounts.audit(
                session.operator.name, f"download-{what}", flow_id, "failed", "file not kept", client
            )
            return self.render(request, "missing.html", session, status_code=404, what=f"the {what} file")
        self.accounts.audit(session.operator.name, f"download-{what}", flow_id, "ok", None, client)
        self._harden(response)
        return response

    # -- actions ----------------------------------------------------------------------------------
    async def replay(self, request: Request) -> Response:
        flow_id = request.path_params["flow_id"]
        session, refused = await self._action_guard(request, "replay", flow_id)
        if refused is not None:
            return refused
        assert session is not None
        outcome = await run_in_threadpool(self._replay, session.operator, flow_id, _client(request))
        if outcome is not None:
            return self.refuse(request, 409, outcome)
        return RedirectResponse(f"{self.base(request)}/flows/{quote(flow_id)}?done=replayed", status_code=303)

    def _replay(self, operator: Operator, flow_id: str, client: str) -> str | None:
        detail = queries.get_flow_detail(self.store, flow_id)
        if detail is None or detail["flow"]["state"] != FlowState.QUARANTINED.value:
            why = (
                "unknown flow"
                if detail is None
                else f"the flow is {detail['flow']['state']}, not QUARANTINED"
            )
            self.accounts.audit(operator.name, "replay", flow_id, "refused", why, client)
            return f"only a quarantined flow can be replayed: {why}"
        # the state is checked again inside the transaction that moves the flow (a worker may hold it)
        if not self.store.quarantine_or_replay(
            flow_id, FlowState.RECEIVED, f"operator:{operator.name}", f"replayed by {operator.name} (console)",
            expected=FlowState.QUARANTINED,
        ):  # fmt: skip
            self.accounts.audit(operator.name, "replay", flow_id, "refused", "changed meanwhile", client)
            return "the flow changed meanwhile; reload the page"
        self.accounts.audit(operator.name, "replay", flow_id, "ok", None, client)
        return None

    async def resend(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        session, refused = await self._action_guard(request, "resend", str(item_id))
        if refused is not None:
            return refused
        assert session is not None
        outcome = await run_in_threadpool(self._resend, session.operator, int(item_id), _client(request))
        if outcome is not None:
            return self.refuse(request, 409, outcome)
        back = str((await request.form()).get("back") or "")
        if not back.startswith(self.base(request) + "/"):
            back = f"{self.base(request)}/flows"
        return RedirectResponse(back + ("&" if "?" in back else "?") + "done=resent", status_code=303)

    def _resend(self, operator: Operator, item_id: int, client: str) -> str | None:
        """Put a sent or dead outbox row back to pending, due now; the delivery workers send it again."""
        item = queries.outbox_item(self.store, item_id)
        if item is None:
            self.accounts.audit(operator.name, "resend", str(item_id), "refused", "no such delivery", client)
            return "no such delivery"
        if item.get("state") not in RESENDABLE:
            why = f"the delivery is {item.get('state')}; only sent or dead deliveries are resent"
            self.accounts.audit(operator.name, "resend", str(item_id), "refused", why, client)
            return why
        with self.store.transaction() as conn:
            done = outbox_resend(conn, item_id)
            if done and item.get("flow_id"):  # a flow waiting for an operator goes back to its deliveries
                self.store.move_unleased(
                    conn, str(item["flow_id"]), FlowState.UNDELIVERED, FlowState.ROUTED,
                    worker=f"operator:{operator.name}", stage="resend",
                    reason=f"resend of {item.get('remote_name')} to {item.get('sink')} by {operator.name} (console)",
                )  # fmt: skip
        if not done:
            self.accounts.audit(operator.name, "resend", str(item_id), "refused", "changed meanwhile", client)
            return "the delivery changed meanwhile; reload the page"
        self.accounts.audit(operator.name, "resend", str(item_id), "ok", f"{item.get('kind')} to {item.get('sink')}",
                            client)  # fmt: skip
        return None


class ApiContextLike(Protocol):
    """What the API application's context offers (src/gateway/api/app.py `ApiContext`)."""

    config: GatewayConfig
    store: Store
    blobs: BlobStore
    ack_dir: Callable[[str], Path]
    extra: dict[str, Any]


def console_routes(
    source: Store | ApiContextLike,
    config: GatewayConfig | None = None,
    data_dir: DataDir | None = None,
    *,
    accounts: Accounts | None = None,
    limiter: LoginLimiter | None = None,
) -> list[BaseRoute]:
    """The console's routes, to mount under `/console`: `Mount("/console", routes=console_routes(...))`.

    Either `(store, config, data_dir)`, or the API application's context alone.
    """
    if isinstance(source, Store):
        if config is None or data_dir is None:
            raise TypeError("console_routes(store, config, data_dir): config and data_dir are required")
        store, cfg, root = source, config, data_dir
        blobs = BlobStore(root.blobs, root.tmp)
        ack_dir: Callable[[str], Path] = lambda partner: root.outbox(cfg, partner)  # noqa: E731
    else:
        store, cfg, blobs, ack_dir = source.store, source.config, source.blobs, source.ack_dir
        given = source.extra.get("data_dir")
        data_dir = given if isinstance(given, DataDir) else DataDir(Path(given)) if given else None
    settings = cfg.console
    if not settings.enabled:  # `[console] enabled = false`: nothing under /console
        return []
    console = Console(
        store,
        cfg,
        blobs,
        ack_dir,
        data_dir.rules if data_dir is not None else None,
        accounts or Accounts(store),
        limiter or LoginLimiter(settings.login_max_failures, settings.login_window_seconds),
    )
    page = console.page
    return [
        Route("/", console.home, methods=["GET"]),
        Route("/login", console.login, methods=["GET", "POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/flows", page(console.flows), methods=["GET"]),
        Route("/flows/backlog", console.backlog, methods=["GET"]),
        Route("/flows/{flow_id}", page(console.flow), methods=["GET"]),
        Route("/flows/{flow_id}/download/{what}", page(console.download), methods=["GET"]),
        Route("/flows/{flow_id}/replay", console.replay, methods=["POST"]),
        Route("/invoices", page(console.invoices), methods=["GET"]),
        Route("/invoices/{invoice_id}", page(console.invoice), methods=["GET"]),
        Route("/deliveries/{item_id:int}/resend", console.resend, methods=["POST"]),
        Route("/rejections", page(console.rejections), methods=["GET"]),
        Route("/partners", page(console.partners), methods=["GET"]),
        Route("/rules", page(console.rules), methods=["GET"]),
        Route("/audit", page(console.audit), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="console-static"),
    ]


def console_app(store: Store, config: GatewayConfig, data_dir: DataDir) -> Starlette:
    """A Starlette app serving only the console under /console (the API app mounts the same routes)."""

    def root(request: Request) -> Response:
        return RedirectResponse("/console/flows", status_code=303)

    return Starlette(
        routes=[Route("/", root), Mount("/console", routes=console_routes(store, config, data_dir))]
    )
