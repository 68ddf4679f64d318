"""Crash-safe intake (architecture.md): claim by rename, blob with fsync, commit the flow row, release.

1. rename(in/f, spool/claim/<partner>/<flow id>__f)   — the file is ours, no one else takes it
2. copy into the content-addressed blob store while hashing, fsync, publish by rename
3. one transaction: the RECEIVED flow row + its event (duplicates point at their original)
4. only then delete the claim file. `recover()` redoes 2–4 for claims a crash left behind.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gateway.model import ReasonCode
from gateway.store.blobs import BlobStore
from gateway.store.db import Store, new_flow_id
from gateway.telemetry.metrics import Metrics

CLAIM_SEPARATOR = "__"


@dataclass(frozen=True)
class TakenFlow:
    flow_id: str
    partner: str
    filename: str
    size: int
    duplicate_of: str | None


class Intake:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        claims_dir: Path,
        max_flow_bytes: int,
        worker_name: str,
        metrics: Metrics,
        on_new_flow: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.claims_dir = claims_dir
        self.max_flow_bytes = max_flow_bytes
        self.worker_name = worker_name
        self.metrics = metrics
        self.on_new_flow = on_new_flow
        self.log = structlog.get_logger("gateway.intake")
        self._lock = threading.Lock()  # folder scan and SFTP hints may race for one path

    def take(self, partner: str, path: Path, source: str = "folder") -> TakenFlow | None:
        """Claim `path` and record it as a flow; None if another taker got there first."""
        with self._lock:
            flow_id = new_flow_id()
            claim_dir = self.claims_dir / partner
            claim_dir.mkdir(parents=True, exist_ok=True)
            claim = claim_dir / f"{flow_id}{CLAIM_SEPARATOR}{path.name}"
            try:
                os.rename(path, claim)
            except FileNotFoundError:
                return None
        return self._record(flow_id, partner, claim, path.name, source)

    def _record(self, flow_id: str, partner: str, claim: Path, raw_name: str, source: str) -> TakenFlow:
        filename = display_name(raw_name)
        started = time.perf_counter()
        size = claim.stat().st_size
        refused = None
        sha = None
        if size > self.max_flow_bytes:
            refused = ReasonCode.TOO_LARGE.value  # not copied in: the acknowledgement says why
        else:
            sha, size = self.blobs.put_file(claim)
        received_at = datetime.now(UTC)
        duplicate_of = self.store.record_received(
            flow_id=flow_id,
            partner=partner,
            source=source,
            filename=filename,
            size=size,
            sha256=sha,
            received_at=received_at,
            worker=self.worker_name,
            refused_reason=refused,
        )
        claim.unlink(missing_ok=True)
        self.metrics.flows_received.labels(partner, source).inc()
        self.metrics.flow_bytes.observe(size)
        self.log.info(
            "flow received",
            flow_id=flow_id,
            partner=partner,
            stage="intake",
            file=filename,
            size=size,
            sha256=sha,
            source=source,
            duplicate_of=duplicate_of,
            to_state="RECEIVED",
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        if self.on_new_flow is not None:
            self.on_new_flow.set()
        return TakenFlow(flow_id, partner, filename, size, duplicate_of)

    def recover(self) -> int:
        """Finish the claims a crash left behind; returns how many were recorded now."""
        recovered = 0
        for partner_dir in sorted(p for p in self.claims_dir.iterdir() if p.is_dir()):
            for claim in sorted(partner_dir.iterdir()):
                flow_id, sep, filename = claim.name.partition(CLAIM_SEPARATOR)
                if not sep or not filename:
                    self.log.warning("unknown file in claims left alone", path=str(claim))
                    continue
                if self.store.flow_exists(flow_id):
                    claim.unlink(missing_ok=True)  # committed before the crash; only the delete was missing
                    continue
                self._record(flow_id, partner_dir.name, claim, filename, "recovered")
                recovered += 1
        return recovered


def display_name(name: str) -> str:
    """The file name as valid UTF-8 text: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")
