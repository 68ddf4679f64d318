"""`as2:<partner>` sink: what leaves the gateway by AS2, sent by the delivery worker from the outbox.

- kind `mdn`: an asynchronous MDN (built and signed at receipt, stored whole in the row) POSTed to the
  partner's `mdn_url`.
- kind `ack`: a flow's acknowledgement (when `deliver_acks = true`), sent as an AS2 message signed and
  encrypted (compressed if the partner's `compress`) to its `url`, asking for a signed synchronous MDN
  that must say "processed" with our MIC. The Message-ID is derived from the outbox row: a re-send after
  a crash carries the same Message-ID, so the partner sees a duplicate, not a second document.

HTTP errors 5xx, 408, 429 and connection problems are transient (retried with backoff); other 4xx
and a failed MDN are permanent (acknowledgements are retried anyway: the outbox never kills them).
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import structlog

from gateway.as2.station import As2Partner, As2Station
from gateway.outbound.base import OutboxItem, PermanentSinkError, TransientSinkError

USER_AGENT = "flow-gateway-as2"


def split_entity(whole: bytes) -> tuple[dict[str, str], bytes]:
    """A stored MIME entity (headers CRLF CRLF body) as HTTP headers and body."""
    head, _, body = whole.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.lower() not in ("content-length", "mime-version"):
            headers[name.strip()] = value.strip()
    return headers, body


def _check(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    text = f"{what}: HTTP {code} {response.text[:200]!r}"
    if code >= 500 or code in (408, 429):
        raise TransientSinkError(text)
    raise PermanentSinkError(text)


class As2Sink:
    def __init__(self, station: As2Station, entry: As2Partner, timeout: float) -> None:
        self.station = station
        self.entry = entry
        self.client = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})
        self.log = structlog.get_logger("gateway.as2")

    def close(self) -> None:
        self.client.close()

    def send(self, item: OutboxItem, payload: bytes) -> str:
        if item.kind == "mdn":
            return self._send_mdn(item, payload)
        if item.kind == "ack":
            return self._send_document(item, payload)
        raise PermanentSinkError(f"the as2 sink does not send {item.kind!r} rows")

    def _post(self, url: str, headers: dict[str, str], body: bytes, what: str) -> httpx.Response:
        try:
            return self.client.post(url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise TransientSinkError(f"{what}: {type(exc).__name__}: {exc}") from None

    def _send_mdn(self, item: OutboxItem, payload: bytes) -> str:
        url = str(item.meta.get("url") or self.entry.config.mdn_url)
        if not url:
            raise PermanentSinkError(f"partner {self.entry.partner} has no mdn_url")
        headers, body = split_entity(payload)
        response = self._post(url, headers, body, "async MDN")
        _check(response, "async MDN")
        self.log.info("mdn sent", mode="async", message_id=item.meta.get("message_id"), url=url,
                      partner=self.entry.partner, http_status=response.status_code)  # fmt: skip
        return f"MDN for {item.meta.get('message_id')} posted: HTTP {response.status_code}"

    def _send_document(self, item: OutboxItem, payload: bytes) -> str:
        from pyas2lib import Mdn, Message

        url = self.entry.config.url
        if not url:
            raise PermanentSinkError(f"partner {self.entry.partner} has no AS2 url")
        message: Any = Message(sender=self.station.organization, receiver=self.station.lib_partner(
            self.entry, sending=True))  # fmt: skip
        left = hashlib.sha256(f"{item.id}:{item.remote_name}".encode()).hexdigest()[:24]
        # binary transfer: the partner gets the acknowledgement byte for byte (text types would be
        # canonicalized to CRLF line ends on the way)
        content_type = "application/octet-stream"
        message.build(payload, filename=item.remote_name, content_type=content_type,
                      message_id=f"ack-{item.id}-{left}", subject="Flow acknowledgement",
                      disposition_notification_to=self.station.as2_id)  # fmt: skip
        response = self._post(url, dict(message.headers), message.content, "AS2 acknowledgement")
        _check(response, "AS2 acknowledgement")
        raw = "".join(f"{k}: {v}\r\n" for k, v in response.headers.items()).encode("latin-1") + b"\r\n"
        status, detail = Mdn().parse(raw + response.content, lambda _mid, _rcpt: message)
        if status != "processed":
            raise PermanentSinkError(f"AS2 acknowledgement {message.message_id}: MDN {status}: {detail}")
        self.log.info("as2 document sent", message_id=message.message_id, partner=self.entry.partner,
                      file=item.remote_name, kind=item.kind)  # fmt: skip
        return f"AS2 {message.message_id}: MDN processed"
