"""Receiving one AS2 message (RFC 4130): parse, check, take it as a flow, answer with an MDN.

Order of a good message: pyas2lib decrypts, decompresses and verifies it against the partner's
certificate; we check the partner's policy (algorithms, compression) and the Message-ID (a `processed`
row of the same partner = `duplicate-document`); `Intake.take_bytes` makes the flow durable (fsync);
the `as2_messages` row commits (with the async MDN's outbox row, if any); only then is the MDN
"processed" built and answered. A crash before that answers nothing: the partner resends, and a
resend whose flow was already taken is a `duplicate-document` (still "processed", with a warning).

Every refused message gets the RFC 4130 §7.4.3 error disposition ("processed/Error: <modifier>"),
a row in `as2_messages` and a count in `gateway_as2_messages_total{partner,result}`; nothing is taken.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import structlog
from sqlalchemy import insert, select

from gateway.as2.station import As2Partner, As2Station
from gateway.runtime.intake import Intake
from gateway.store.db import Store, utcnow
from gateway.store.models import As2MessageRow
from gateway.store.outbox import enqueue
from gateway.telemetry.metrics import Metrics

PROCESSED = "processed"
# RFC 4130 §7.4.3 disposition modifiers (and pyas2lib's for unknown partners / duplicates).
UNKNOWN_PARTNER = "unknown-trading-partner"
AUTHENTICATION_FAILED = "authentication-failed"
DECRYPTION_FAILED = "decryption-failed"
DECOMPRESSION_FAILED = "decompression-failed"
INTEGRITY_CHECK_FAILED = "integrity-check-failed"
INSUFFICIENT_SECURITY = "insufficient-message-security"
DUPLICATE = "duplicate-document"
UNEXPECTED = "unexpected-processing-error"
MIC_MISMATCH_TEXT = "Message Digest does not match"  # pyas2lib's IntegrityError for a content change


@dataclass(frozen=True)
class As2Answer:
    """The HTTP answer to the sender: the sync MDN (headers + body), or an empty 200 (async / none)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class _Outcome:
    result: str  # "processed" or an error modifier
    disposition: str  # "processed" | "processed/Error" | "processed/Warning" | "failed/Failure"
    detail: str | None = None
    flow_id: str | None = None


def cipher_of(raw: bytes) -> str | None:
    """pyas2lib's name of the content cipher of an enveloped (encrypted) message, None if not encrypted."""
    from asn1crypto import cms

    mime = message_from_bytes(raw)
    if (
        mime.get_content_type() != "application/pkcs7-mime"
        or mime.get_param("smime-type") != "enveloped-data"
    ):
        return None
    data = mime.get_payload(decode=True)
    if not isinstance(data, bytes):
        return None
    try:
        info = cms.ContentInfo.load(data)
        alg = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]
        name = str(alg["algorithm"].native)
        if name == "rc4":
            return "rc4_128_cbc"
        cipher = str(alg.encryption_cipher)
        if cipher == "aes":
            return f"aes_{alg.key_length * 8}_cbc"
        return {"tripledes": "tripledes_192_cbc", "rc2": "rc2_128_cbc"}.get(cipher, cipher)
    except Exception:  # noqa: BLE001 - not parsable: pyas2lib reports decryption-failed
        return None


def raw_message(headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """The HTTP headers and body as the MIME message pyas2lib parses."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return lines.encode("latin-1", "replace") + b"\r\n" + body


class As2Receiver:
    def __init__(self, station: As2Station, intake: Intake, store: Store, metrics: Metrics) -> None:
        self.station = station
        self.intake = intake
        self.store = store
        self.metrics = metrics
        self.log = structlog.get_logger("gateway.as2")
        self._inflight: set[tuple[str, str]] = set()
        self._inflight_changed = threading.Condition()

    # -- entry point ------------------------------------------------------------------------------
    def receive(self, headers: Sequence[tuple[str, str]], body: bytes) -> As2Answer:
        """One HTTP POST: headers as received (names any case) and the body."""
        from pyas2lib import Message

        lower = {name.lower(): value for name, value in headers}
        for required in ("as2-from", "as2-to", "message-id"):
            if not lower.get(required, "").strip():
                self.metrics.as2_messages.labels("unknown", "bad-request").inc()
                return As2Answer(400, {"Content-Type": "text/plain"}, f"missing {required} header\n".encode())
        raw = raw_message(headers, body)
        # pyas2lib would build its own MDN at the end of parse() (and fails to for an unknown sender):
        # we build the MDN ourselves, after the take, so it parses the message without that header.
        unasked = raw_message(
            [(k, v) for k, v in headers if k.lower() != "disposition-notification-to"], body
        )
        message: Any = Message()
        entry: list[As2Partner] = []

        def find_org(as2_to: str) -> Any:
            return self.station.organization if as2_to == self.station.as2_id else None

        def find_partner(as2_from: str) -> Any:
            found = self.station.by_as2_id.get(as2_from)
            if found is None:
                return None
            entry.append(found)
            return self.station.lib_partner(found)

        status, (exc, _tb), _mdn = message.parse(unasked, find_org_cb=find_org, find_partner_cb=find_partner)
        partner = entry[0] if entry else None
        message_id = str(message.message_id or lower["message-id"].strip("<> "))
        if exc is not None or status != PROCESSED:
            outcome = self._parse_failure(exc, status)
        else:
            outcome = self._policy(message, partner, raw)
        wants_async = bool(lower.get("receipt-delivery-option"))
        mdn_mode = "none" if not lower.get("disposition-notification-to") else "sync"
        if mdn_mode == "sync" and wants_async and partner is not None and partner.config.mdn_mode == "async":
            mdn_mode = "async"
        if outcome.result == PROCESSED and partner is not None:
            with self._message_lock(partner.partner, message_id):
                outcome = self._take(message, partner, message_id, mdn_mode, lower)
                if outcome.result == DUPLICATE:
                    self._record(message, partner, message_id, outcome, mdn_mode, lower)
        else:
            self._record(message, partner, message_id, outcome, mdn_mode, lower)
        return self._answer(message, partner, message_id, outcome, mdn_mode, lower, wants_async)

    # -- checks -----------------------------------------------------------------------------------
    @staticmethod
    def _parse_failure(exc: BaseException | None, status: str) -> _Outcome:
        disposition = str(getattr(exc, "disposition_type", "processed/Error") or "processed/Error")
        modifier = str(getattr(exc, "disposition_modifier", "") or UNEXPECTED)
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else status
        if modifier == AUTHENTICATION_FAILED and MIC_MISMATCH_TEXT in str(exc):
            modifier = INTEGRITY_CHECK_FAILED  # the signature is over other content: RFC 4130 §7.4.3
        if disposition == "failed/Failure":  # pyas2lib's generic AS2Exception: still a processing error
            disposition = "processed/Error"
        return _Outcome(modifier, disposition, detail)

    def _policy(self, message: Any, partner: As2Partner | None, raw: bytes) -> _Outcome:
        """The partner's algorithm and compression policy, on a message pyas2lib accepted."""
        if partner is None:
            return _Outcome(UNKNOWN_PARTNER, "processed/Error", "no partner")
        cfg = partner.config
        if message.signed and message.digest_alg not in cfg.digest_algorithms:
            why = f"digest {message.digest_alg} not in {cfg.digest_algorithms}"
            return _Outcome(INSUFFICIENT_SECURITY, "processed/Error", why)
        if message.encrypted:
            cipher = cipher_of(raw)
            if cipher not in cfg.encryption_algorithms:
                why = f"cipher {cipher} not in {cfg.encryption_algorithms}"
                return _Outcome(INSUFFICIENT_SECURITY, "processed/Error", why)
        if cfg.compress and not message.compressed:
            return _Outcome(INSUFFICIENT_SECURITY, "processed/Error", "the partner must compress")
        return _Outcome(PROCESSED, PROCESSED)

    @contextmanager
    def _message_lock(self, partner: str, message_id: str) -> Iterator[None]:
        """One message per (partner, Message-ID) at a time: the duplicate check and the take are atomic."""
        key = (partner, message_id)
        with self._inflight_changed:
            while key in self._inflight:
                self._inflight_changed.wait(5.0)
            self._inflight.add(key)
        try:
            yield
        finally:
            with self._inflight_changed:
                self._inflight.discard(key)
                self._inflight_changed.notify_all()

    def _take(
        self, message: Any, partner: As2Partner, message_id: str, mdn_mode: str, headers: dict[str, str]
    ) -> _Outcome:
        with self.store.reader() as conn:
            seen = conn.execute(
                select(As2MessageRow.flow_id)
                .where(
                    As2MessageRow.partner == partner.partner,
                    As2MessageRow.message_id == message_id,
                    As2MessageRow.result == PROCESSED,
                )
                .limit(1)
            ).first()
        if seen is not None:
            return _Outcome(DUPLICATE, "processed/Warning", f"already taken as flow {seen[0]}", seen[0])
        data = payload_bytes(message)
        filename = message.payload.get_filename() or f"{safe_id(message_id)}.as2"
        try:
            taken = self.intake.take_bytes(partner.partner, data, filename, "as2")
        except Exception as exc:  # noqa: BLE001 - disk full, database down: the partner will resend
            self.log.exception("as2 message not taken", message_id=message_id, partner=partner.partner)
            outcome = _Outcome(UNEXPECTED, "processed/Error", f"{type(exc).__name__}: {exc}")
            self._record(message, partner, message_id, outcome, mdn_mode, headers)
            return outcome
        outcome = _Outcome(PROCESSED, PROCESSED, None, taken.flow_id)
        self._record(message, partner, message_id, outcome, mdn_mode, headers, filename=taken.filename,
                     size=len(data))  # fmt: skip
        return outcome

    # -- recording and answering ------------------------------------------------------------------
    def _record(
        self,
        message: Any,
        partner: As2Partner | None,
        message_id: str,
        outcome: _Outcome,
        mdn_mode: str,
        headers: dict[str, str],
        *,
        filename: str | None = None,
        size: int | None = None,
        mdn: tuple[str, bytes, str] | None = None,
    ) -> None:
        """The message's row (and, for async MDNs, the outbox row) in one transaction."""
        if mdn_mode == "async" and partner is not None and mdn is None:
            mdn = self._build_mdn(message, partner, message_id, outcome)
        row_mdn_id = mdn[0] if mdn else None
        with self.store.transaction() as conn:
            conn.execute(
                insert(As2MessageRow).values(
                    message_id=message_id[:300],
                    as2_from=headers.get("as2-from", "")[:130],
                    as2_to=headers.get("as2-to", "")[:130],
                    partner=partner.partner if partner else None,
                    received_at=utcnow(),
                    result=outcome.result,
                    disposition=outcome.disposition
                    if outcome.result == PROCESSED
                    else f"{outcome.disposition}: {outcome.result}",
                    detail=outcome.detail,
                    flow_id=outcome.flow_id,
                    filename=filename,
                    size=size,
                    signed=bool(message.signed),
                    encrypted=bool(message.encrypted),
                    compressed=bool(message.compressed),
                    mic=message.mic.decode() if message.mic else None,
                    mdn_mode=mdn_mode,
                    mdn_message_id=row_mdn_id,
                )
            )
            if mdn is not None and partner is not None:
                mdn_id, payload, _ = mdn
                enqueue(conn, kind="mdn", sink=f"as2:{partner.partner}", remote_name=f"mdn-{safe_id(mdn_id)}",
                        payload=payload, flow_id=outcome.flow_id,
                        meta={"message_id": message_id, "url": partner.config.mdn_url,
                              "result": outcome.result})  # fmt: skip
        label = partner.partner if partner else "unknown"
        self.metrics.as2_messages.labels(label, outcome.result).inc()
        log = self.log.info if outcome.result in (PROCESSED, DUPLICATE) else self.log.warning
        log(
            "as2 message received",
            message_id=message_id,
            partner=label,
            as2_from=headers.get("as2-from"),
            result=outcome.result,
            detail=outcome.detail,
            flow_id=outcome.flow_id,
            signed=bool(message.signed),
            encrypted=bool(message.encrypted),
            compressed=bool(message.compressed),
            mdn=mdn_mode,
            mdn_message_id=row_mdn_id,
        )

    def _build_mdn(
        self, message: Any, partner: As2Partner | None, message_id: str, outcome: _Outcome
    ) -> tuple[str, bytes, str]:
        """(MDN Message-ID, headers + body as one MIME entity, Content-Type)."""
        from pyas2lib import Mdn, Partner

        if message.sender is None:  # unknown partner: pyas2lib needs a sender to build (and sign) the MDN
            as2_from = str(message.headers.get("as2-from", "unknown")).strip('"')
            message.sender = Partner(as2_name=as2_from, validate_certs=False)
        options = str(message.headers.get("disposition-notification-options", ""))
        digest = options.split(";")[-1].split(",")[-1].strip().replace("-", "").lower() if options else None
        if message.mic is None and digest and not message.encrypted and message.receiver is not None:
            # RFC 4130 §7.3.1: an unsigned, unencrypted message's MIC is over its content (no headers).
            try:
                body = payload_bytes(message) if outcome.result == PROCESSED else None
                if body is not None:
                    message.mic = base64.b64encode(hashlib.new(digest, body).digest())
                    message.digest_alg = digest
            except ValueError:
                pass
        if outcome.result == PROCESSED:
            status, detailed = PROCESSED, None
        else:
            status, detailed = outcome.disposition, outcome.result
        if outcome.result not in (PROCESSED, DUPLICATE):
            message.mic = None  # no MIC for what we did not take
        mdn: Any = Mdn(mdn_mode="SYNC", digest_alg=digest)
        mdn.build(message=message, status=status, detailed_status=detailed)
        whole = mdn.headers_str + b"\r\n" + mdn.content
        return str(mdn.message_id), whole, str(mdn.headers.get("Content-Type", ""))

    def _answer(
        self,
        message: Any,
        partner: As2Partner | None,
        message_id: str,
        outcome: _Outcome,
        mdn_mode: str,
        headers: dict[str, str],
        wants_async: bool,
    ) -> As2Answer:
        if mdn_mode in ("none", "async"):
            return As2Answer(
                200, {"Content-Type": "text/plain"}, b"received\n" if mdn_mode == "async" else b""
            )
        if wants_async:
            self.log.warning("async MDN asked, answered synchronously (partner mdn_mode is sync or unknown)",
                             message_id=message_id)  # fmt: skip
        mdn_id, whole, _ = self._build_mdn(message, partner, message_id, outcome)
        head, _, body = whole.partition(b"\r\n\r\n")
        answer_headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep and name.lower() not in ("content-length", "mime-version"):
                answer_headers[name.strip()] = value.strip()
        self.log.info(
            "mdn sent", message_id=message_id, mdn_message_id=mdn_id, mode="sync", result=outcome.result
        )
        return As2Answer(200, answer_headers, body)


def payload_bytes(message: Any) -> bytes:
    """The business document carried by a parsed message (its MIME content, transfer-decoded)."""
    payload = message.payload
    if payload.is_multipart():
        content = message.content
        return content if isinstance(content, bytes) else str(content).encode()
    data = payload.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def safe_id(message_id: str) -> str:
    """A file-name-safe, deterministic form of a Message-ID."""
    digest = hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in message_id.strip("<>"))[:80].strip("_")
    return f"{stem or 'msg'}-{digest}"
