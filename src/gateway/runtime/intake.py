"""Crash-safe intake (architecture.md): claim by rename, blob with fsync, commit the flow row, release.

1. rename(in/f, spool/claim/<partner>/<flow id>/f)   — the file is ours, no one else takes it
2. copy into the content-addressed blob store while hashing, fsync, publish by rename
3. one transaction: the RECEIVED flow row + its event (duplicates point at their original)
4. only then delete the claim file. `recover()` redoes 2–4 for claims a crash left behind.

The claim keeps the partner's file name as it was in in/ (so it fits wherever the original fitted)
inside a directory named by the flow id: claim names never grow with the partner's name length.
Doors that receive bytes rather than a file (HTTP API, AS2) write them to the claim directory with
`take_bytes` (temporary name, fsync, rename) and then follow the same steps.

A door that streams a file in and hashes it as it arrives (the SFTP server) writes it into
`staging_dir` (spool/tmp, emptied on start), fsyncs it, and hands it over with `take_staged`, which
makes it a claim (rename + fsync of the claim directories) and returns: the door may confirm the
upload then, because a durable claim always becomes exactly one flow (step 1 done; steps 2–4 by a
recorder thread, or by `recover()` after a crash — the flow id is the claim's, so a claim recorded
just before a crash is not recorded twice). The recorder makes the blob by a hard link when the door
gave the hash (no second copy of the bytes).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gateway.fsutil import fsync_dir
from gateway.model import ReasonCode
from gateway.store.blobs import BlobStore
from gateway.store.db import Store, new_flow_id
from gateway.telemetry.metrics import Metrics

LEGACY_CLAIM_SEPARATOR = "__"  # claims of versions before 0.2: spool/claim/<partner>/<flow id>__<file>
BYTES_CLAIM_TEMP = ".incoming"
STAGED_BATCH_MAX = 256  # staged claims recorded in one transaction at most


@dataclass(frozen=True)
class TakenFlow:
    flow_id: str
    partner: str
    filename: str
    size: int
    duplicate_of: str | None


@dataclass(frozen=True)
class _Staged:
    flow_id: str
    partner: str
    claim: Path
    filename: str
    sha256: str | None
    size: int
    source: str


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
        self._staged: queue.SimpleQueue[_Staged] = queue.SimpleQueue()
        self._pending: set[str] = set()  # flow ids of staged claims the recorder has not finished
        self._recorder: threading.Thread | None = None

    def take(self, partner: str, path: Path, source: str = "folder") -> TakenFlow | None:
        """Claim `path` and record it as a flow; None if another taker got there first."""
        with self._lock:
            flow_id = new_flow_id()
            claim_dir = self.claims_dir / partner / flow_id
            claim_dir.mkdir(parents=True)
            claim = claim_dir / path.name
            try:
                os.rename(path, claim)
            except FileNotFoundError:
                claim_dir.rmdir()
                return None
        return self._record(flow_id, partner, claim, path.name, source)

    def take_bytes(self, partner: str, data: bytes, filename: str, source: str) -> TakenFlow:
        """Record `data` received by a door that holds bytes (API, AS2); durable when this returns."""
        name = safe_claim_name(filename)
        flow_id = new_flow_id()
        claim_dir = self.claims_dir / partner / flow_id
        claim_dir.mkdir(parents=True)
        temp = claim_dir / BYTES_CLAIM_TEMP
        with temp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        claim = claim_dir / name
        os.rename(temp, claim)  # recovery only trusts complete claims
        fsync_dir(claim_dir)
        return self._record(flow_id, partner, claim, filename, source)

    @property
    def staging_dir(self) -> Path:
        """Where a door streams a file it will hand to `take_staged` (spool/tmp: emptied on start)."""
        return self.blobs.tmp

    def take_staged(
        self,
        partner: str,
        staged: Path,
        filename: str,
        sha256: str | None,
        size: int,
        source: str,
        *,
        durable: bool = True,
    ) -> str:
        """Claim a file written and fsynced in `staging_dir`; returns its flow id once the claim is durable.

        From then on the file is ours exactly like a claimed folder file: the background recorder (or,
        after a crash, `recover()`) turns it into exactly one flow, named by the claim's flow id.
        `sha256` is its hash as the door streamed it (None when it could not): the recorder then makes
        the blob by a hard link instead of a copy.
        """
        flow_id = new_flow_id()
        with self._lock:  # before the claim exists: a concurrent recover() leaves it to the recorder
            self._pending.add(flow_id)
            if self._recorder is None:
                self._recorder = threading.Thread(
                    target=self._record_staged, name="intake-staged", daemon=True
                )
                self._recorder.start()
        try:
            claim_dir = self.claims_dir / partner / flow_id
            claim_dir.mkdir(parents=True)
            claim = claim_dir / safe_claim_name(filename)
            os.rename(staged, claim)
            if durable:  # False only with [sftp] fsync_uploads = false (the operator's choice: speed)
                # The claim's name. As in take_bytes, the parent is not fsynced: on a journaling file
                # system (ext4, XFS) this fsync commits the journal up to here, the mkdir included; the
                # parent is busy (other claims come and go), its own fsync would cost one more commit.
                fsync_dir(claim_dir)
        except BaseException:
            with self._lock:
                self._pending.discard(flow_id)
            raise
        self._staged.put(_Staged(flow_id, partner, claim, filename, sha256, size, source))
        return flow_id

    def _record_staged(self) -> None:
        """(recorder thread) blob by hard link, flow row, claim removed — for every staged claim.

        Group commit: the claims waiting when the recorder comes round are recorded in one transaction.
        """
        while True:
            batch = [self._staged.get()]
            while len(batch) < STAGED_BATCH_MAX:
                try:
                    batch.append(self._staged.get_nowait())
                except queue.Empty:
                    break
            try:
                self._record_batch(batch)
            except Exception:  # noqa: BLE001 - the claims stay; recover() records them at the next start
                self.log.exception("staged claims not recorded", flow_ids=[item.flow_id for item in batch])
            finally:
                with self._lock:
                    self._pending.difference_update(item.flow_id for item in batch)

    def _record_batch(self, batch: list[_Staged]) -> None:
        """Each claim on its own up to the blob; then one transaction for all (one by one if it fails).

        A claim whose recording fails stays where it is: `recover()` records it at the next start.
        """
        linked: list[_Staged] = []
        for item in batch:
            try:
                if item.sha256 is None or item.size > self.max_flow_bytes:
                    self._record(item.flow_id, item.partner, item.claim, item.filename, item.source)
                else:
                    self.blobs.link_in(item.claim, item.sha256)
                    linked.append(item)
            except Exception:  # noqa: BLE001 - logged; the claim stays for recover()
                self.log.exception("staged claim not recorded", flow_id=item.flow_id, partner=item.partner)
        if not linked:
            return
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        rows = [
            dict(flow_id=item.flow_id, partner=item.partner, source=item.source,
                 filename=display_name(item.filename), size=item.size, sha256=item.sha256,
                 received_at=received_at, worker=self.worker_name)
            for item in linked
        ]  # fmt: skip
        try:
            originals: list[str | None] = self.store.record_received_batch(rows)
        except Exception:  # noqa: BLE001 - e.g. a conflict with another node: one by one
            self.log.warning("group commit failed, recording one by one", flows=len(linked))
            for item in linked:
                try:
                    self._commit(item.flow_id, item.partner, display_name(item.filename), item.size,
                                 item.sha256, None, item.source, started)  # fmt: skip
                    self._remove_claim(item.claim)
                except Exception:  # noqa: BLE001 - logged; the claim stays for recover()
                    self.log.exception("staged claim not recorded", flow_id=item.flow_id)
            return
        for item, original in zip(linked, originals, strict=True):
            self._announce(item.flow_id, item.partner, display_name(item.filename), item.size, item.sha256,
                           item.source, original, started)  # fmt: skip
            self._remove_claim(item.claim)

    def wait_recorded(self, timeout: float) -> bool:
        """True once every staged claim handed over so far is recorded (tests, orderly stops)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.01)
        return False

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
        taken = self._commit(flow_id, partner, filename, size, sha, refused, source, started)
        self._remove_claim(claim)
        return taken

    def _commit(
        self,
        flow_id: str,
        partner: str,
        filename: str,
        size: int,
        sha: str | None,
        refused: str | None,
        source: str,
        started: float,
    ) -> TakenFlow:
        duplicate_of = self.store.record_received(
            flow_id=flow_id,
            partner=partner,
            source=source,
            filename=filename,
            size=size,
            sha256=sha,
            received_at=datetime.now(UTC),
            worker=self.worker_name,
            refused_reason=refused,
        )
        return self._announce(flow_id, partner, filename, size, sha, source, duplicate_of, started)

    def _announce(
        self,
        flow_id: str,
        partner: str,
        filename: str,
        size: int,
        sha: str | None,
        source: str,
        duplicate_of: str | None,
        started: float,
    ) -> TakenFlow:
        """After the commit: metrics, the log line, the workers woken."""
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
            for entry in sorted(partner_dir.iterdir()):
                found = self._claim_in(entry)
                if found is None:
                    continue
                flow_id, claim, filename = found
                with self._lock:
                    if flow_id in self._pending:
                        continue  # the recorder thread is on it
                if self.store.flow_exists(flow_id):
                    self._remove_claim(claim)  # committed before the crash; only the delete was missing
                    continue
                self._record(flow_id, partner_dir.name, claim, filename, "recovered")
                recovered += 1
        return recovered

    def _remove_claim(self, claim: Path) -> None:
        claim.unlink(missing_ok=True)
        if claim.parent.parent.parent == self.claims_dir:  # <claims>/<partner>/<flow id>/<file>
            claim.parent.rmdir()

    def _claim_in(self, entry: Path) -> tuple[str, Path, str] | None:
        """(flow id, claim file, file name) of one claim entry, or None when there is nothing to redo."""
        if entry.is_dir():
            files = [f for f in entry.iterdir() if f.name != BYTES_CLAIM_TEMP]
            if not files:  # crashed before the rename (or a bytes door before its data was durable)
                for leftover in entry.iterdir():
                    leftover.unlink(missing_ok=True)
                entry.rmdir()
                return None
            if len(files) > 1:
                self.log.warning("claim directory with several files left alone", path=str(entry))
                return None
            return entry.name, files[0], files[0].name
        flow_id, sep, filename = entry.name.partition(LEGACY_CLAIM_SEPARATOR)
        if not sep or not filename:
            self.log.warning("unknown file in claims left alone", path=str(entry))
            return None
        return flow_id, entry, filename


def safe_claim_name(filename: str) -> str:
    """A file name given by a remote (HTTP, AS2) made safe to create: no path, no dot-file, ≤ 200 bytes."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].lstrip(".").replace("\x00", "") or "flow"
    while len(os.fsencode(name)) > 200:
        name = name[:-1]
    return name


def display_name(name: str) -> str:
    """The file name as valid UTF-8 text: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")
