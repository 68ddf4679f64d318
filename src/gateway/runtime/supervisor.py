"""The daemon: wires store, intake, workers and servers; handles signals; drains on stop.

Threads: one intake thread (folder scan + SFTP hints), N worker threads (each claims flows from the
store and runs the pipeline; validation itself runs in the process pool), the SFTP server's asyncio
loop, and the metrics/API HTTP server. SIGTERM / Ctrl-C: intake stops taking files, workers finish
the flow they hold, servers close, the pool shuts down.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gateway.config import GatewayConfig
from gateway.datadir import DataDir
from gateway.inbound.local_dir import FolderSource
from gateway.outbound.base import SinkResolver
from gateway.outbound.local_dir import FolderSink
from gateway.runtime.delivery import DeliveryWorker, SentHook, build_sinks
from gateway.runtime.intake import Intake
from gateway.runtime.pipeline import FlowIdentifier, InvoiceValidator, Pipeline
from gateway.runtime.routing import Router
from gateway.store.blobs import BlobStore
from gateway.store.db import Store, default_worker_name
from gateway.store.outbox import Outbox
from gateway.telemetry.metrics import Metrics


@dataclass
class Health:
    """What /readyz reports: each component says whether it is up."""

    components: dict[str, bool] = field(default_factory=dict)

    def set(self, name: str, up: bool) -> None:
        self.components[name] = up

    @property
    def ready(self) -> bool:
        return bool(self.components) and all(self.components.values())


class Gateway:
    def __init__(
        self,
        data_dir: DataDir,
        config: GatewayConfig,
        *,
        identifier: FlowIdentifier,
        validator: InvoiceValidator,
        metrics: Metrics | None = None,
        extra_services: list[Any] | None = None,
        sinks: SinkResolver | None = None,
        router: Router | None = None,
        sent_hooks: list[SentHook] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.metrics = metrics or Metrics()
        self.worker_name = default_worker_name(config.node_name)
        self.store = Store(data_dir.database_url(config))
        self.blobs = BlobStore(data_dir.blobs, data_dir.tmp)
        self.stop_event = threading.Event()
        self.work_available = threading.Event()
        self.health = Health()
        self.log = structlog.get_logger("gateway")
        self.hints: queue.Queue[tuple[str, Path]] = queue.Queue()
        self.partners = [pid for pid, p in config.partners.items() if p.enabled]
        self.intake = Intake(
            self.store,
            self.blobs,
            data_dir.claims,
            config.intake.max_flow_bytes,
            self.worker_name,
            self.metrics,
            on_new_flow=self.work_available,
        )
        self.folder_source = FolderSource(
            {pid: data_dir.inbox(config, pid) for pid in self.partners},
            config.intake.min_age_seconds,
            config.intake.scan_interval_seconds,
            self.intake.take,
            watch=config.intake.watch,
        )
        self.pipeline = Pipeline(
            config,
            self.store,
            self.blobs,
            identifier,
            validator,
            self.metrics,
            self.worker_name,
            router=router or Router(config, self.blobs),
        )
        # Delivery: the outbox, its sinks, and a wake-up set after every commit that enqueued rows.
        self.sinks = sinks or build_sinks(data_dir, config)
        self.outbox = Outbox(self.store, self.blobs)
        self.outbox_wake = threading.Event()
        self.store.after_outbox_commit.append(self.outbox_wake.set)
        self.sent_hooks = list(sent_hooks or [])
        self.extra_services = list(extra_services or [])
        self.closers: list[Callable[[], None]] = []  # run after the workers have drained
        self._threads: list[threading.Thread] = []

    def sink_for(self, partner: str) -> FolderSink:
        return FolderSink(self.data_dir.outbox(self.config, partner))

    def upload_hint(self, partner: str, path: Path) -> None:
        """A file was completely written by a client that closed it (SFTP): take it now, no stability wait."""
        self.hints.put((partner, path))
        self.folder_source.wake.set()

    # -- lifecycle --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Schema, folders and crash recovery; safe to call on every start."""
        self.data_dir.prepare(self.config)
        if self.store.current_revision() is None:
            self.store.migrate()  # first start: the whole schema at once
        self.store.check_schema()  # an older schema waits for `gateway db upgrade`
        self.health.set("database", self.store.ping())
        for path in self.data_dir.tmp.iterdir():
            path.unlink(missing_ok=True)  # half-written blobs: their claims are still there
        removed = sum(self.sink_for(pid).remove_partials() for pid in self.partners)
        recovered = self.intake.recover()
        released = self.store.release_stale_leases(all_leases=self.store.is_sqlite)
        released += Outbox(self.store).release_stale_leases(all_leases=self.store.is_sqlite)
        self.log.info(
            "recovery done",
            claims_recovered=recovered,
            partial_acks_removed=removed,
            leases_released=released,
        )

    def start(self) -> None:
        self.health.set("validation", False)
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()
        self._spawn("intake", self._intake_loop)
        for n in range(self.config.workers.threads):
            self._spawn(f"worker-{n}", self._worker_loop)
        for n in range(self.config.delivery.threads):
            self._spawn(f"delivery-{n}", self._delivery_loop)
        for service in self.extra_services:
            service.start()
            self.health.set(type(service).__name__, True)
        self.health.set("intake", True)
        self.log.info(
            "gateway started",
            worker=self.worker_name,
            partners=self.partners,
            data_dir=str(self.data_dir.root),
        )

    def _warm_up(self) -> None:
        """Compile the main rule packs by validating sample invoices; /readyz waits for it."""
        from gateway.model import Syntax
        from gateway.samples import make_cii, make_ubl

        started = time.perf_counter()
        try:
            for xml, syntax in ((make_ubl(lines=1), Syntax.UBL_INVOICE), (make_cii(lines=1), Syntax.CII)):
                report = self.pipeline.validator.validate(xml, syntax, "urn:cen.eu:en16931:2017", None, "")
                if str(report.outcome) != "valid":
                    raise RuntimeError(f"sample {syntax} invoice came out {report.outcome}")
        except Exception as exc:  # noqa: BLE001 - reported through /readyz and the log
            self.log.error("validation warm-up failed", error=f"{type(exc).__name__}: {exc}")
            return
        self.health.set("validation", True)
        self.log.info("validation ready", duration_ms=round((time.perf_counter() - started) * 1000))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self.stop_event.is_set():
                try:
                    target()
                    return
                except Exception:  # noqa: BLE001 - a loop must never die: log and start it again
                    self.log.exception("loop crashed, restarting", loop=name)
                    self.stop_event.wait(1.0)

        return run

    def _intake_loop(self) -> None:
        source = self.folder_source
        self.intake.recover()  # claims a failed take left behind (this loop restarts after an error)
        source.start_watching()
        try:
            while not self.stop_event.is_set():
                self._drain_hints()
                source.scan_once()
                self._drain_hints()
                pending = source.tracker.next_check_in(time.monotonic())
                interval = self.config.intake.scan_interval_seconds
                timeout = interval if pending is None else min(interval, pending + 0.05)
                source.wake.wait(timeout)
                source.wake.clear()
        finally:
            source.stop_watching()

    def _drain_hints(self) -> None:
        while True:
            try:
                partner, path = self.hints.get_nowait()
            except queue.Empty:
                return
            self.folder_source.tracker.forget(path)
            self.intake.take(partner, path, source="sftp")

    def _worker_loop(self) -> None:
        workers = self.config.workers
        while not self.stop_event.is_set():
            flow = self.store.claim_next(self.worker_name, workers.lease_seconds)
            if flow is None:
                self.work_available.wait(workers.poll_interval_seconds)
                self.work_available.clear()
                continue
            self.pipeline.process(flow)

    def _delivery_loop(self) -> None:
        worker = DeliveryWorker(self.store, self.outbox, self.sinks, self.config.delivery, self.metrics,
                                self.worker_name, sent_hooks=self.sent_hooks)  # fmt: skip
        worker.loop(self.stop_event, self.outbox_wake)

    def stop(self, timeout: float = 60.0) -> None:
        self.log.info("stopping: draining workers")
        self.stop_event.set()
        self.work_available.set()
        self.outbox_wake.set()
        self.folder_source.wake.set()
        for service in reversed(self.extra_services):
            try:
                service.stop()
            except Exception:  # noqa: BLE001
                self.log.exception("service did not stop cleanly", service=type(service).__name__)
        for thread in self._threads:
            thread.join(timeout)
        for close in self.closers:
            close()
        self.sinks.close()
        self.store.close()
        self.log.info("gateway stopped")

    def run_forever(self) -> int:
        """Run until SIGTERM / SIGINT; returns the process exit code."""

        def on_signal(signum: int, _frame: object) -> None:
            self.log.info("signal received", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.prepare()
        try:
            self.start()
        except Exception as exc:  # noqa: BLE001 - e.g. the SFTP or metrics port is taken
            self.log.error("gateway could not start", error=f"{type(exc).__name__}: {exc}")
            self.stop(timeout=10)
            return 1
        while not self.stop_event.wait(0.5):
            pass
        self.stop()
        return 0
