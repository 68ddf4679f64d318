"""Takes one claimed flow through its stages; every state change is one store transaction.

RECEIVED --identify--> IDENTIFIED --transform--> TRANSFORMED --validate--> VALIDATED --route--> ROUTED
(or ACKNOWLEDGED / REJECTED when nothing is to be delivered; see statemachine.py).
Flow-level problems (empty, too large, duplicate, unreadable) reject at once with a negative ack.
The acknowledgement is ENQUEUED in the outbox in the same transaction as the flow's final transition
(and the deliveries with VALIDATED → ROUTED); the delivery workers write it, under a name derived from
the flow id, after the commit. Counters move after the commit they count.
Results needed by later stages are stored (invoice rows at VALIDATED); identification is cheap and
deterministic, so a flow resumed after a crash simply identifies its blob again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway.api.webhooks import enqueue_flow_event
from gateway.config import GatewayConfig
from gateway.errors import PermanentError
from gateway.model import LIFECYCLE_SYNTAXES, Identification, InvoiceDocument, ReasonCode, Syntax
from gateway.runtime import lifecycle_flow
from gateway.runtime.routing import Router
from gateway.statemachine import Event, FlowState, Position, backoff_seconds, transition
from gateway.store.blobs import BlobStore
from gateway.store.db import FlowSnapshot, InvoiceRecord, Store, utcnow
from gateway.store.models import InvoiceRow
from gateway.store.outbox import enqueue
from gateway.telemetry.metrics import Metrics
from gateway.transforms.ack_build import (
    INVOICE_ACCEPTED,
    INVOICE_REJECTED,
    FlowVerdict,
    InvoiceVerdict,
    LayerVerdict,
    ack_file_name,
    build_ack_json,
    build_ack_xml,
)


class FlowIdentifier(Protocol):
    def identify(self, data: bytes, filename: str) -> Identification: ...


class InvoiceValidator(Protocol):
    def validate(
        self, xml: bytes, syntax: Syntax, profile: str | None, container: str | None = None, partner: str = ""
    ) -> Any: ...


MAX_REASON_FINDINGS = 3
STOP_STATES = (FlowState.ACKNOWLEDGED, FlowState.REJECTED, FlowState.ROUTED)  # the flow workers' part ends


# Called with (conn, verdict, ack file name, ack XML) in the transaction that enqueues a flow's
# acknowledgement: other doors send it back their way too (AS2 `deliver_acks`).
AckHook = Callable[[Connection, FlowVerdict, str, bytes], None]


class _GuardFailed(Exception):
    """The guarded transition found the flow moved (lease lost): roll the whole transaction back."""


@dataclass
class FlowContext:
    flow: FlowSnapshot
    position: Position
    identification: Identification | None = None


class Pipeline:
    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        blobs: BlobStore,
        identifier: FlowIdentifier,
        validator: InvoiceValidator,
        metrics: Metrics,
        worker_name: str,
        router: Router | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.blobs = blobs
        self.router = router
        self.identifier = identifier
        self.validator = validator
        self.metrics = metrics
        self.worker = worker_name
        self.log = structlog.get_logger("gateway.worker")
        self.ack_hooks: list[AckHook] = []

    # -- driving ----------------------------------------------------------------------------------
    def process(self, flow: FlowSnapshot) -> FlowState:
        """Run `flow` (claimed under this worker's lease) as far as it goes; returns where it stopped."""
        structlog.contextvars.bind_contextvars(flow_id=flow.id, partner=flow.partner)
        try:
            return self._process(flow)
        finally:
            structlog.contextvars.unbind_contextvars("flow_id", "partner", "stage")

    def _process(self, flow: FlowSnapshot) -> FlowState:
        if flow.state is FlowState.FAILED:  # resumes at its checkpoint (from scratch if none was kept)
            position = Position(flow.state, flow.checkpoint or FlowState.RECEIVED)
        else:
            position = Position(flow.state)
        ctx = FlowContext(flow, position)
        if flow.claims > self.config.workers.max_crashes:
            return self._quarantine(
                ctx, f"a worker took this flow {flow.claims - 1} times without finishing it"
            )
        if ctx.position.state is FlowState.FAILED:
            reason = f"retry {flow.attempts + 1} from {ctx.position.checkpoint}"
            if not self._advance(ctx, Event.RETRY, "retry", time.perf_counter(), reason=reason,
                                 values={"checkpoint": None}):  # fmt: skip
                return FlowState.FAILED
        stage = "?"
        try:
            while ctx.position.state not in STOP_STATES:
                stage, step = self._step_for(ctx.position.state)
                structlog.contextvars.bind_contextvars(stage=stage)
                started = time.perf_counter()
                if not step(ctx, started):
                    return ctx.position.state  # lost the lease: someone else owns the flow now
                self.metrics.stage_duration.labels(stage).observe(time.perf_counter() - started)
            return ctx.position.state
        except PermanentError as exc:
            return self._reject(ctx, exc.reason.value, exc.message, stage)
        except Exception as exc:  # noqa: BLE001 - anything else is transient: retry with backoff
            return self._fail(ctx, stage, f"{type(exc).__name__}: {exc}")

    def _step_for(self, state: FlowState) -> tuple[str, Callable[[FlowContext, float], bool]]:
        steps: dict[FlowState, tuple[str, Callable[[FlowContext, float], bool]]] = {
            FlowState.RECEIVED: ("identify", self._identify),
            FlowState.IDENTIFIED: ("transform", self._transform),
            FlowState.TRANSFORMED: ("validate", self._validate),
            FlowState.VALIDATED: ("route", self._acknowledge),
        }
        if state not in steps:
            raise RuntimeError(f"no stage handles {state} yet")
        return steps[state]

    def _advance(
        self,
        ctx: FlowContext,
        event: Event,
        stage: str,
        started: float,
        *,
        reason: str | None = None,
        **kw: Any,
    ) -> bool:
        target = transition(ctx.position, event)
        duration_ms = (time.perf_counter() - started) * 1000
        kw.setdefault("lease_seconds", self.config.workers.lease_seconds)
        ok = self.store.advance(
            ctx.flow,
            ctx.position.state,
            target.state,
            worker=self.worker,
            stage=stage,
            reason=reason,
            duration_ms=duration_ms,
            **kw,
        )
        if ok:
            self.log.info(
                "flow state",
                stage=stage,
                from_state=ctx.position.state.value,
                to_state=target.state.value,
                duration_ms=round(duration_ms, 3),
                reason=reason,
            )
            ctx.position = target
        else:
            self.log.warning("lease lost, flow left to its new owner", stage=stage)
        return ok

    # -- stages -----------------------------------------------------------------------------------
    def _identification(self, ctx: FlowContext) -> Identification:
        if ctx.identification is None:
            flow = ctx.flow
            if flow.refused_reason == ReasonCode.TOO_LARGE.value:
                raise PermanentError(
                    ReasonCode.TOO_LARGE,
                    f"file of {flow.size} bytes exceeds the limit of {self.config.intake.max_flow_bytes} bytes",
                )
            if flow.duplicate_of:
                raise PermanentError(
                    ReasonCode.DUPLICATE_FLOW,
                    f"same content (SHA-256 {flow.sha256}) already received from {flow.partner} as flow "
                    f"{flow.duplicate_of}",
                )
            if flow.size == 0 or flow.sha256 is None:
                raise PermanentError(ReasonCode.EMPTY_FLOW, "the file is empty")
            data = self.blobs.read(flow.sha256)
            if not data.strip():
                raise PermanentError(ReasonCode.EMPTY_FLOW, "the file holds only white space")
            ctx.identification = self.identifier.identify(data, flow.filename)
        return ctx.identification

    def _identify(self, ctx: FlowContext, started: float) -> bool:
        ident = self._identification(ctx)
        return self._advance(
            ctx,
            Event.IDENTIFY,
            "identify",
            started,
            reason=f"{ident.syntax_code}: {len(ident.invoices)} invoice(s)",
            values={
                "syntax": ident.syntax.value,
                "syntax_code": ident.syntax_code,
                "profile": (ident.profile or None) and ident.profile[:256],
                "invoice_count": len(ident.invoices),
            },
        )

    def _transform(self, ctx: FlowContext, started: float) -> bool:
        # Flat files and PDFs were normalised to invoice XML by identification; syntax conversion for
        # delivery belongs to routing (a later stage).
        ident = self._identification(ctx)
        return self._advance(
            ctx, Event.TRANSFORM, "transform", started, reason=f"{len(ident.invoices)} XML document(s)"
        )

    def _validate(self, ctx: FlowContext, started: float) -> bool:
        ident = self._identification(ctx)
        if ident.syntax.value in LIFECYCLE_SYNTAXES:  # statuses, not invoices (issue 18)
            return lifecycle_flow.validate_step(self, ctx, started)
        records = [self._judge(seq, doc, ctx.flow.partner) for seq, doc in enumerate(ident.invoices, start=1)]
        accepted = sum(1 for r in records if r.status == INVOICE_ACCEPTED)
        return self._advance(
            ctx,
            Event.VALIDATE,
            "validate",
            started,
            reason=f"{accepted} of {len(records)} invoice(s) accepted",
            values={"invoices_accepted": accepted, "invoices_rejected": len(records) - accepted},
            invoices=records,
        )

    def _judge(self, seq: int, doc: InvoiceDocument, partner: str) -> InvoiceRecord:
        summary = doc.summary.to_dict()
        if doc.error is not None:
            self.metrics.invoices.labels(doc.syntax.value, "rejected").inc()
            return InvoiceRecord(
                seq, doc.item, doc.syntax.value, doc.profile, summary, INVOICE_REJECTED,
                ReasonCode.SYNTAX.value, f"{doc.error.rule_id}: {doc.error.message}",
                {"outcome": "invalid", "layers": [], "findings": [doc.error.to_dict()]},
            )  # fmt: skip
        report = self.validator.validate(doc.xml, doc.syntax, doc.profile, doc.container, partner)
        report_dict = report_to_dict(report)
        outcome = report_dict["outcome"]
        self.metrics.invoices.labels(doc.syntax.value, outcome).inc()
        if outcome == "valid":
            return InvoiceRecord(
                seq,
                doc.item,
                doc.syntax.value,
                doc.profile,
                summary,
                INVOICE_ACCEPTED,
                None,
                None,
                report_dict,
            )
        return InvoiceRecord(
            seq, doc.item, doc.syntax.value, doc.profile, summary, INVOICE_REJECTED,
            ReasonCode.SEMANTIC.value, rejection_message(report_dict), report_dict,
        )  # fmt: skip

    def _acknowledge(self, ctx: FlowContext, started: float) -> bool:
        """Route the accepted invoices (when a directory is loaded), then, in ONE transaction: the
        routing verdicts, the delivery rows, the sender's acknowledgement and the transition."""
        flow = ctx.flow
        routed = 0
        try:
            with self.store.transaction() as conn:
                rows = self._invoice_rows(conn, flow.id)
                result = None
                if self.router is not None and any(r["status"] == INVOICE_ACCEPTED for r in rows):
                    result = self.router.route(conn, flow, rows, lambda: self._identification(ctx))
                routed = result.routed if result else 0
                lifecycle_flow.first_statuses(self, conn, flow)  # 200 / 213 / 221 / 501 (issue 18)
                verdict = lifecycle_flow.verdict(conn, ctx) or self._verdict(flow, rows)
                if routed:
                    event, reason = (
                        Event.ROUTE,
                        f"{routed} invoice(s) routed; {verdict.status} {verdict.flow_status}",
                    )
                else:
                    event = Event.ACKNOWLEDGE if verdict.status == "Ok" else Event.REJECT
                    reason = f"{verdict.status} {verdict.flow_status}"
                values = self._final_values(verdict, self._enqueue_ack(conn, verdict))
                values.update(invoices_accepted=verdict.accepted, invoices_rejected=verdict.rejected)
                if routed:
                    values.pop("completed_at")  # completed when delivered
                target = transition(ctx.position, event)
                if not self.store.advance_in(
                    conn, flow, ctx.position.state, target.state, worker=self.worker, stage="route",
                    reason=reason, duration_ms=(time.perf_counter() - started) * 1000, values=values,
                    release=True,
                ):  # fmt: skip
                    raise _GuardFailed
                enqueue_flow_event(conn, flow.id)  # webhooks (api area), in the ack's transaction
        except _GuardFailed:
            self.log.warning("lease lost, flow left to its new owner", stage="route")
            return False
        self.log.info("flow state", stage="route", from_state=ctx.position.state.value,
                      to_state=target.state.value, reason=reason)  # fmt: skip
        ctx.position = target
        self._count_completion(flow, verdict.status, None)
        return True

    @staticmethod
    def _invoice_rows(conn: Connection, flow_id: str) -> list[dict[str, Any]]:
        stmt = select(InvoiceRow.__table__).where(InvoiceRow.flow_id == flow_id).order_by(InvoiceRow.seq)
        return [dict(r._mapping) for r in conn.execute(stmt)]

    def _finish(
        self,
        ctx: FlowContext,
        event: Event,
        stage: str,
        verdict: FlowVerdict,
        values: dict[str, Any],
        reason: str,
    ) -> bool:
        """A final transition and the sender's acknowledgement, enqueued in the same transaction."""
        try:
            with self.store.transaction() as conn:
                values = {**self._final_values(verdict, self._enqueue_ack(conn, verdict)), **values}
                target = transition(ctx.position, event)
                if not self.store.advance_in(conn, ctx.flow, ctx.position.state, target.state, worker=self.worker,
                                             stage=stage, reason=reason, values=values, release=True):  # fmt: skip
                    raise _GuardFailed
                enqueue_flow_event(conn, ctx.flow.id)  # webhooks (api area), in the ack's transaction
        except _GuardFailed:
            self.log.warning("lease lost, flow left to its new owner", stage=stage)
            return False
        self.log.info("flow state", stage=stage, from_state=ctx.position.state.value,
                      to_state=target.state.value, reason=reason)  # fmt: skip
        ctx.position = target
        return True

    # -- endings ----------------------------------------------------------------------------------
    def _reject(self, ctx: FlowContext, reason_code: str, message: str, stage: str) -> FlowState:
        flow = ctx.flow
        ident = ctx.identification
        verdict = FlowVerdict(
            flow.id, flow.partner, flow.filename, flow.size, flow.sha256, flow.received_at,
            reason_code=reason_code, reason_message=message,
            syntax=ident.syntax.value if ident else None,
            syntax_code=ident.syntax_code if ident else None,
            profile=ident.profile if ident else None,
        )  # fmt: skip
        values = {"reason_code": reason_code, "reason_message": message}
        if self._finish(ctx, Event.REJECT, stage, verdict, values, f"{reason_code}: {message}"):
            self._count_completion(flow, "Error", reason_code)
        return ctx.position.state

    def _fail(self, ctx: FlowContext, stage: str, message: str) -> FlowState:
        attempts = ctx.flow.attempts + 1
        self.log.warning("stage failed", stage=stage, error=message, attempts=attempts, exc_info=True)
        if attempts >= self.config.workers.max_attempts:
            return self._quarantine(ctx, f"failed {attempts} times, last at {stage}: {message}")
        workers = self.config.workers
        delay = backoff_seconds(attempts, workers.backoff_base_seconds, workers.backoff_max_seconds)
        self.metrics.flow_retries.labels(stage).inc()
        target = transition(ctx.position, Event.FAIL)
        self._advance(
            ctx, Event.FAIL, stage, time.perf_counter(),
            reason=f"{message} (attempt {attempts}, retry in {delay:.0f}s)",
            values={
                "attempts": attempts,
                "claims": 0,  # this claim ended cleanly: only claims that never end count as crashes
                "checkpoint": target.checkpoint.value if target.checkpoint else None,
                "next_attempt_at": utcnow() + timedelta(seconds=delay),
            },
            release=True,
        )  # fmt: skip
        return FlowState.FAILED

    def _quarantine(self, ctx: FlowContext, why: str) -> FlowState:
        """Park the flow for an operator, and still answer the sender (one ack per flow)."""
        flow = ctx.flow
        verdict = FlowVerdict(
            flow.id, flow.partner, flow.filename, flow.size, flow.sha256, flow.received_at,
            reason_code=ReasonCode.INTERNAL.value,
            reason_message="the gateway could not process this flow; it is kept for an operator to replay",
        )  # fmt: skip
        # the ack goes through the outbox like every other: an out/ folder that fails is retried forever
        values = {"reason_code": ReasonCode.INTERNAL.value, "reason_message": why}
        if self._finish(ctx, Event.QUARANTINE, "quarantine", verdict, values, why):
            self._count_completion(flow, "quarantined", ReasonCode.INTERNAL.value)
            self.log.error("flow quarantined", reason=why)
        return ctx.position.state

    # -- helpers ----------------------------------------------------------------------------------
    def _verdict(self, flow: FlowSnapshot, invoice_rows: Sequence[dict[str, Any]]) -> FlowVerdict:
        row = flow.values
        invoices = tuple(invoice_verdict(inv) for inv in invoice_rows)
        return FlowVerdict(
            flow.id, flow.partner, flow.filename, flow.size, flow.sha256, flow.received_at,
            syntax=row.get("syntax"), syntax_code=row.get("syntax_code"), profile=row.get("profile"),
            invoices=invoices,
            reason_code=None if invoices else ReasonCode.SYNTAX.value,
            reason_message=None if invoices else "the flow holds no invoice",
        )  # fmt: skip

    def _enqueue_ack(self, conn: Connection, verdict: FlowVerdict) -> str:
        """The sender's acknowledgement as outbox rows of its partner's out/ (in the caller's
        transaction); returns the name of the acknowledgement of record."""
        issued = datetime.now(UTC)
        acks = self.config.acks
        sink = f"partner:{verdict.partner}"
        name = ack_file_name(verdict.filename, verdict.flow_id, "xml")
        meta = {"status": verdict.status, "received_at": verdict.received_at.isoformat()}
        if acks.json_copy:
            # JSON first: the XML is the acknowledgement of record, so it lands last (the outbox sends
            # one flow's ack rows in order).
            json_name = ack_file_name(verdict.filename, verdict.flow_id, "json")
            enqueue(conn, kind="ack", sink=sink, remote_name=json_name,
                    payload=build_ack_json(verdict, issued, acks.max_findings_per_invoice),
                    flow_id=verdict.flow_id, meta={**meta, "copy": True})  # fmt: skip
        xml = build_ack_xml(verdict, issued, acks.max_findings_per_invoice)
        enqueue(conn, kind="ack", sink=sink, remote_name=name, payload=xml,
                flow_id=verdict.flow_id, meta=meta)  # fmt: skip
        for hook in self.ack_hooks:
            hook(conn, verdict, name, xml)
        return name

    def _final_values(self, verdict: FlowVerdict, ack_name: str | None) -> dict[str, Any]:
        return {
            "ack_status": verdict.status,
            "ack_name": ack_name,
            "chorus_status": verdict.flow_status,
            "completed_at": utcnow(),
            "next_attempt_at": None,
        }

    def _count_completion(self, flow: FlowSnapshot, outcome: str, reason: str | None) -> None:
        self.metrics.flows_completed.labels(flow.partner, outcome.lower()).inc()
        if reason:
            self.metrics.flows_rejected.labels(reason).inc()
        # gateway_flow_latency_seconds is observed when the acknowledgement is written (runtime/delivery.py)


def report_to_dict(report: Any) -> dict[str, Any]:
    """A ValidationReport as plain data (what the store and the acknowledgement keep)."""
    return {
        "outcome": str(report.outcome),
        "layers": [
            {
                "name": layer.layer,
                "pack": layer.pack_id,
                "version": layer.pack_version,
                "artefact": layer.artefact,
                "sha256": layer.sha256,
                "status": str(layer.status),
                "message": layer.message,
                "duration_ms": getattr(layer, "duration_ms", None),
            }
            for layer in report.layers
        ],
        "findings": [f.to_dict() for layer in report.layers for f in layer.findings],
    }


def rejection_message(report: dict[str, Any]) -> str:
    if report["outcome"] == "not_validated":
        broken = [f"{lay['name']} ({lay['pack']}): {lay['message']}" for lay in report["layers"]
                  if lay["status"] in ("error", "not_run")]  # fmt: skip
        return "could not validate: " + ("; ".join(broken) or "a validation layer did not run")
    fatal = [f for f in report["findings"] if f["severity"] == "fatal"]
    shown = "; ".join(f"{f['rule_id']}: {f['message']}" for f in fatal[:MAX_REASON_FINDINGS])
    more = len(fatal) - MAX_REASON_FINDINGS
    return shown + (f" (+{more} more)" if more > 0 else "")


def invoice_verdict(row: dict[str, Any]) -> InvoiceVerdict:
    report = json.loads(row["report_json"]) if row.get("report_json") else None
    layers: Sequence[dict[str, Any]] = report["layers"] if report else ()
    return InvoiceVerdict(
        seq=row["seq"],
        item=row["item"],
        status=row["status"],
        syntax=row["syntax"],
        profile=row["profile"],
        summary=json.loads(row["summary_json"]),
        reason_code=row["reason_code"],
        reason_message=row["reason_message"],
        outcome=report["outcome"] if report else None,
        layers=tuple(
            LayerVerdict(
                name=lay["name"],
                pack=lay["pack"] or "",
                version=lay["version"] or "",
                artefact=lay["artefact"] or "",
                sha256=lay["sha256"] or "",
                status=lay["status"],
                message=lay.get("message") or "",
            )
            for lay in layers
        ),  # fmt: skip
        findings=tuple(report["findings"]) if report else (),
    )
