"""Webhooks of the Flow Service: registrations, events through the outbox, and the signing HTTP sink.

A partner registers a callback URL (`POST /v1/webhooks`) and gets a signing key once (32 random bytes,
base64). Every event for that partner that matches the webhook's filters (`flowTypes`, `flowDirection`,
`ackStatus`) becomes one outbox row (`kind="webhook"`, `sink="webhook:<id>"`), enqueued in the
transaction that makes the event, and the delivery worker sends it with `WebhookSink`:

- `POST <callbackUrl>` with the event JSON (a `Flow` resource for acknowledgements), headers
  `Afnor-Signature-Timestamp` (epoch seconds at sending time), `Afnor-Signature`, `Gateway-Event`
  (event type) and `Gateway-Delivery` (outbox row id: the same for every retry of one event).
- Signature, as the standard describes it (XP Z12-013 Flow Service 1.3.0, createWebhook):
  `fingerprint = SHA-256(body || "@" || timestamp)` as lowercase hex, then
  `Afnor-Signature = base64(HMAC-SHA256(key = base64-decoded signing key, message = fingerprint))`.
  A receiver recomputes it and refuses timestamps older than a few minutes (replay).
- 2xx = sent; 5xx, 408, 429, time-outs and connection errors are transient (retried with backoff);
  any other answer (4xx, 3xx) is permanent, as is a webhook deleted meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from gateway.outbound.base import OutboxItem, PermanentSinkError, TransientSinkError
from gateway.store.db import Store, utcnow
from gateway.store.models import FlowRow, WebhookRow

SINK_PREFIX = "webhook:"
EVENT_KIND = "webhook"
SIGNATURE_HEADER = "Afnor-Signature"
TIMESTAMP_HEADER = "Afnor-Signature-Timestamp"
EVENT_HEADER = "Gateway-Event"
DELIVERY_HEADER = "Gateway-Delivery"
TRANSIENT_STATUSES = {408, 425, 429}
MAX_URL_LENGTH = 2048


class WebhookError(ValueError):
    """A registration the partner must fix (bad URL, too many webhooks)."""


@dataclass(frozen=True)
class Webhook:
    id: str
    partner: str
    callback_url: str
    signing_key: str
    filters: dict[str, Any]
    created_at: datetime

    def resource(self, *, with_key: bool = False) -> dict[str, Any]:
        """The standard's `Webhook` object (the signing key only at creation)."""
        out: dict[str, Any] = {"webhookId": self.id, "callbackUrl": self.callback_url}
        out.update(self.filters)
        out["createdAt"] = self.created_at.isoformat().replace("+00:00", "Z")
        if with_key:
            out["signingKey"] = self.signing_key
        return out

    def wants(self, body: Mapping[str, Any]) -> bool:
        """Whether an event body passes this webhook's filters (a filter on a field the body lacks passes)."""
        types = self.filters.get("flowTypes")
        if types and "flowType" in body and body["flowType"] not in types:
            return False
        direction = self.filters.get("flowDirection")
        if direction and "flowDirection" in body and body["flowDirection"] != direction:
            return False
        status = self.filters.get("ackStatus")
        ack = body.get("acknowledgement")
        return not (status and isinstance(ack, Mapping) and ack.get("status") != status)


# -- signing ----------------------------------------------------------------------------------------
def signature(signing_key: str, body: bytes, timestamp: int) -> str:
    fingerprint = hashlib.sha256(body + b"@" + str(timestamp).encode("ascii")).hexdigest()
    key = base64.b64decode(signing_key)
    return base64.b64encode(hmac.new(key, fingerprint.encode("ascii"), hashlib.sha256).digest()).decode()


def verify(
    signing_key: str,
    body: bytes,
    timestamp: str,
    signed: str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (no replay of old events)."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(signing_key, body, int(timestamp)), signed)


# -- registrations ----------------------------------------------------------------------------------
def check_callback_url(url: str, *, https_only: bool, allow_private: bool = True) -> None:
    """A callback URL a partner may register. Without `allow_private`, a host that is or resolves to a
    loopback, private, link-local or reserved address is refused (the gateway must not be made to POST
    into its own network); the check is made at registration."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError("callbackUrl: not a URL") from None
    schemes = ("https",) if https_only else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        raise WebhookError(f"callbackUrl: an absolute {' or '.join(schemes)} URL")
    if parts.username or parts.password:
        raise WebhookError("callbackUrl: credentials in the URL are not accepted")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(f"callbackUrl: at most {MAX_URL_LENGTH} characters")
    if not allow_private:
        for address in _addresses(parts.hostname, port or (443 if parts.scheme == "https" else 80)):
            if not address.is_global:
                raise WebhookError(f"callbackUrl: {parts.hostname} is not a public address ({address})")


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise WebhookError(f"callbackUrl: {host} does not resolve") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _webhook(row: Any) -> Webhook:
    return Webhook(
        row.id, row.partner, row.callback_url, row.signing_key, json.loads(row.filters_json), row.created_at
    )


def create_webhook(
    conn: Connection,
    partner: str,
    params: Mapping[str, Any],
    *,
    max_per_partner: int,
    https_only: bool,
    allow_private: bool = True,
) -> Webhook:
    url = str(params["callbackUrl"])
    check_callback_url(url, https_only=https_only, allow_private=allow_private)
    count = conn.execute(
        select(func.count()).where(WebhookRow.partner == partner, WebhookRow.deleted_at.is_(None))
    ).scalar_one()
    if count >= max_per_partner:
        raise WebhookError(f"at most {max_per_partner} webhooks per partner; delete one first")
    filters = {k: params[k] for k in ("flowTypes", "flowDirection", "ackStatus") if params.get(k)}
    hook = Webhook(
        str(uuid.uuid4()), partner, url, base64.b64encode(secrets.token_bytes(32)).decode(), filters, utcnow()
    )
    conn.execute(
        insert(WebhookRow).values(
            id=hook.id,
            partner=partner,
            callback_url=url,
            signing_key=hook.signing_key,
            filters_json=json.dumps(filters),
            created_at=hook.created_at,
            deleted_at=None,
        )
    )
    return hook


def list_webhooks(conn: Connection, partner: str) -> list[Webhook]:
    rows = conn.execute(
        select(WebhookRow.__table__)
        .where(WebhookRow.partner == partner, WebhookRow.deleted_at.is_(None))
        .order_by(WebhookRow.created_at, WebhookRow.id)
    )
    return [_webhook(r) for r in rows]


def get_webhook(conn: Connection, webhook_id: str) -> Webhook | None:
    row = conn.execute(
        select(WebhookRow.__table__).where(WebhookRow.id == webhook_id, WebhookRow.deleted_at.is_(None))
    ).first()
    return _webhook(row) if row is not None else None


def delete_webhook(conn: Connection, partner: str, webhook_id: str) -> bool:
    result = conn.execute(
        update(WebhookRow)
        .where(WebhookRow.id == webhook_id, WebhookRow.partner == partner, WebhookRow.deleted_at.is_(None))
        .values(deleted_at=utcnow())
    )
    return result.rowcount == 1


# -- events -----------------------------------------------------------------------------------------
def enqueue_event(conn: Connection, partner: str, event_type: str, body: dict[str, Any]) -> int:
    """One outbox row per webhook of `partner` whose filters the event passes; returns how many.

    Call it inside the transaction that makes the event (acknowledgement written, status recorded), so
    the event is sent if and only if that transaction commits (BRIEF interface 5).
    """
    return _enqueue_for(conn, list_webhooks(conn, partner), partner, event_type, body)


def enqueue_flow_event(conn: Connection, flow_id: str, event_type: str = "flow.acknowledged") -> int:
    """`enqueue_event` for a flow whose acknowledgement was just recorded in `conn`'s transaction: the
    body is the flow's `Flow` resource as that transaction sees it (read only when the flow's partner
    has webhooks). Returns the rows enqueued."""
    from gateway.api.resources import event_body

    partner = conn.execute(select(FlowRow.partner).where(FlowRow.id == flow_id)).scalar()
    hooks = list_webhooks(conn, partner) if partner is not None else []
    if not hooks:
        return 0
    found = event_body(conn, flow_id)
    if found is None:
        return 0
    return _enqueue_for(conn, hooks, found[0], event_type, found[1])


def _enqueue_for(
    conn: Connection, hooks: list[Webhook], partner: str, event_type: str, body: dict[str, Any]
) -> int:
    from gateway.store.outbox import enqueue

    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    digest = hashlib.sha256(payload).hexdigest()
    flow_id = body.get("flowId") if isinstance(body.get("flowId"), str) else None
    queued = 0
    for hook in hooks:
        if not hook.wants(body):
            continue
        enqueue(
            conn,
            kind=EVENT_KIND,
            sink=SINK_PREFIX + hook.id,
            remote_name=f"{event_type}:{flow_id or '-'}:{digest[:16]}",
            payload=payload,
            payload_sha256=digest,
            flow_id=flow_id,
            meta={"event": event_type, "partner": partner},
        )
        queued += 1
    return queued


# -- the sink ---------------------------------------------------------------------------------------
def webhook_sink_factory(store: Store, timeout_seconds: float) -> Callable[[str], WebhookSink]:
    """For `SinkResolver.register_prefix("webhook:", …)`: one sink serves every webhook id."""
    sink = WebhookSink(store, timeout_seconds=timeout_seconds)

    def factory(_webhook_id: str) -> WebhookSink:
        return sink

    return factory


class WebhookSink:
    """The `Sink` for `webhook:<id>` rows: signed HTTP POST of the stored event body."""

    def __init__(
        self,
        store: Store,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self.client = httpx.Client(
            timeout=timeout_seconds, follow_redirects=False, transport=transport, trust_env=False
        )

    def close(self) -> None:
        self.client.close()

    def send(self, item: OutboxItem, payload: bytes) -> str:
        if not item.sink.startswith(SINK_PREFIX):
            raise PermanentSinkError(f"not a webhook sink: {item.sink}")
        with self.store.reader() as conn:
            hook = get_webhook(conn, item.sink[len(SINK_PREFIX) :])
        if hook is None:
            raise PermanentSinkError(f"{item.sink}: the webhook was deleted")
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(hook.signing_key, payload, timestamp),
            EVENT_HEADER: str(item.meta.get("event", "")),
            DELIVERY_HEADER: str(item.id),
            "User-Agent": "flow-gateway-webhook",
        }
        try:
            response = self.client.post(hook.callback_url, content=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientSinkError(f"{hook.callback_url}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientSinkError(f"{hook.callback_url}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return f"HTTP {status} from {hook.callback_url}"
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise TransientSinkError(f"{hook.callback_url}: HTTP {status}")
        raise PermanentSinkError(f"{hook.callback_url}: HTTP {status}")
