"""Delivery workers: claim outbox rows, send them through their sink, record the outcome.

One `DeliveryWorker` per thread (started by the supervisor). A worker sleeps on `wake` (set after every
commit that enqueued rows) or polls every `poll_interval_seconds`, and never dies of a send: every error
is recorded on the row (transient → retry with backoff; permanent → dead; acks are retried forever with
at most `ack_backoff_max_seconds` between tries). A worker killed between "sent" and "recorded" leaves
the row pending under its lease; once the lease expires the row is sent again under the same name.

When a flow's last delivery row is sent, the flow moves ROUTED → DELIVERED in the same transaction; when
a delivery row goes dead, ROUTED → UNDELIVERED (visible in `gateway flows --state UNDELIVERED` and
`gateway_flows{state="UNDELIVERED"}`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from gateway.config import DeliveryConfig, FolderSinkConfig, GatewayConfig
from gateway.datadir import DataDir
from gateway.outbound.base import PermanentSinkError, Sink, SinkResolver, TransientSinkError, UnknownSinkError
from gateway.statemachine import FlowState
from gateway.store.db import Store, utcnow
from gateway.store.models import OutboxRow
from gateway.store.outbox import Outbox, OutboxItem, RetryPolicy
from gateway.telemetry.metrics import Metrics

# Called in the transaction that records a sent row (the lifecycle helper records status 203 here).
SentHook = Callable[[Connection, OutboxItem], None]


def policies(config: DeliveryConfig) -> tuple[RetryPolicy, RetryPolicy]:
    """(deliveries and other kinds, acknowledgements): acks are never dead and retried more often."""
    rows = RetryPolicy(config.max_attempts, config.backoff_base_seconds, config.backoff_max_seconds)
    acks = replace(rows, backoff_max_seconds=min(config.ack_backoff_max_seconds, config.backoff_max_seconds))
    return rows, acks


class DeliveryWorker:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        sinks: SinkResolver,
        config: DeliveryConfig,
        metrics: Metrics,
        worker_name: str,
        *,
        sent_hooks: Sequence[SentHook] = (),
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.sinks = sinks
        self.config = config
        self.metrics = metrics
        self.worker = worker_name
        self.policy, self.ack_policy = policies(config)
        self.sent_hooks = list(sent_hooks)
        self.log = structlog.get_logger("gateway.delivery")

    def run_once(self, now: datetime | None = None) -> bool:
        """Send one due row; False when none was due."""
        item = self.outbox.claim(self.worker, self.config.lease_seconds, now=now)
        if item is None:
            return False
        log = self.log.bind(outbox_id=item.id, kind=item.kind, sink=item.sink, flow_id=item.flow_id,
                            remote_name=item.remote_name, attempt=item.attempts)  # fmt: skip
        permanent = False
        try:
            payload = self.outbox.payload(item)
            receipt = self.sinks.resolve(item.sink).send(item, payload)
        except PermanentSinkError as exc:
            error, permanent = f"{type(exc).__name__}: {exc}", True
        except TransientSinkError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a sink bug or an I/O error: retried, never fatal
            error = f"{type(exc).__name__}: {exc}"
        else:
            hooks = [self._after_sent, *self.sent_hooks]
            if self.outbox.mark_sent(item, self.worker, receipt, now=now, after=hooks):
                self._count(item, "ok")
                log.info("outbox row sent", receipt=receipt)
            else:
                log.warning("outbox lease lost after sending; the row is sent again under the same name")
            return True
        policy = self.ack_policy if item.kind == "ack" else self.policy
        outcome = self.outbox.mark_failed(
            item, self.worker, error, policy, permanent=permanent, now=now, on_dead=[self._after_dead]
        )
        if outcome != "lost":
            self._count(item, "retry" if outcome == "retry" else "dead")
        (log.error if outcome == "dead" else log.warning)("outbox send failed", error=error, outcome=outcome)
        return True

    def _count(self, item: OutboxItem, result: str) -> None:
        self.metrics.deliveries.labels(item.sink, result).inc()
        if item.kind == "ack" and result == "ok" and not item.meta.get("copy"):
            received = item.meta.get("received_at")
            if received:  # from file taken to acknowledgement written
                latency = (utcnow() - datetime.fromisoformat(str(received))).total_seconds()
                self.metrics.flow_latency.observe(max(0.0, latency))
            self.metrics.acks_written.labels(str(item.meta.get("status", "?"))).inc()

    def _after_sent(self, conn: Connection, item: OutboxItem) -> None:
        """ROUTED → DELIVERED once no delivery row of the flow is left pending or dead."""
        if item.kind != "delivery" or item.flow_id is None:
            return
        left = conn.execute(
            select(func.count()).where(
                OutboxRow.flow_id == item.flow_id, OutboxRow.kind == "delivery", OutboxRow.state != "sent"
            )
        ).scalar()
        if left:
            return
        self.store.move_unleased(
            conn, item.flow_id, FlowState.ROUTED, FlowState.DELIVERED, worker=self.worker, stage="deliver",
            reason=f"delivered: {item.remote_name} to {item.sink}", values={"completed_at": utcnow()},
        )  # fmt: skip

    def _after_dead(self, conn: Connection, item: OutboxItem) -> None:
        if item.kind != "delivery" or item.flow_id is None:
            return
        self.store.move_unleased(
            conn, item.flow_id, FlowState.ROUTED, FlowState.UNDELIVERED, worker=self.worker, stage="deliver",
            reason=f"delivery of {item.remote_name} to {item.sink} is dead after {item.attempts} attempt(s)",
        )  # fmt: skip

    def loop(self, stop: threading.Event, wake: threading.Event) -> None:
        """Send due rows until `stop`; sleep until woken, the next due row, or the poll interval."""
        while not stop.is_set():
            if self.run_once():
                continue
            wake.wait(self.config.poll_interval_seconds)
            wake.clear()


def build_sinks(data_dir: DataDir, config: GatewayConfig) -> SinkResolver:
    """The sinks of this gateway: `partner:<id>` → that partner's out/ folder; one sink per `[sinks.<id>]`
    (type folder: a directory; type sftp: `SftpPushSink`)."""
    from gateway.outbound.local_dir import FolderDeliverySink

    resolver = SinkResolver()

    def partner_folder(partner: str) -> Sink:
        if partner not in config.partners:
            raise UnknownSinkError(f"no partner {partner!r} in the configuration")
        return FolderDeliverySink(data_dir.outbox(config, partner))

    resolver.register_prefix("partner:", partner_folder)
    for sink_id, sink_config in config.sinks.items():
        if isinstance(sink_config, FolderSinkConfig):
            path = Path(sink_config.path)
            resolver.register(
                sink_id, FolderDeliverySink(path if path.is_absolute() else data_dir.root / path)
            )
        else:
            from gateway.outbound.sftp_push import SftpPushSink

            resolver.register(sink_id, SftpPushSink(sink_config, data_dir.root))
    return resolver
