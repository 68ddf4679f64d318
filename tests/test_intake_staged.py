"""Intake of files a door streamed and hashed itself (SFTP): durable claim first, then blob by link and row."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.models import FlowRow
from gateway.telemetry.metrics import Metrics


def _intake(tmp_path: Path, url: str, max_bytes: int = 1 << 20) -> tuple[Intake, Store]:
    store = Store(url)
    store.migrate()
    for d in ("claims", "blobs", "tmp"):
        (tmp_path / d).mkdir(exist_ok=True)
    blobs = BlobStore(tmp_path / "blobs", tmp_path / "tmp")
    return Intake(store, blobs, tmp_path / "claims", max_bytes, "t", Metrics()), store


def _stage(intake: Intake, data: bytes) -> tuple[Path, str]:
    staged = intake.staging_dir / f".sftp-{hashlib.md5(data).hexdigest()}.upload"  # noqa: S324 - a name
    staged.write_bytes(data)
    return staged, hashlib.sha256(data).hexdigest()


def _flows(store: Store) -> list[FlowRow]:
    with store.reader() as conn:
        return list(conn.execute(select(FlowRow).order_by(FlowRow.filename)).all())  # type: ignore[arg-type]


def test_staged_file_becomes_its_blob_by_link_not_copy(tmp_path: Path, store_url: str) -> None:
    intake, store = _intake(tmp_path, store_url)
    staged, sha = _stage(intake, b"<Invoice/>" * 100)
    inode = staged.stat().st_ino
    flow_id = intake.take_staged("acme", staged, "a.xml", sha, 1000, "sftp")
    assert not staged.exists()
    assert intake.wait_recorded(30)
    blob = intake.blobs.path_for(sha)
    assert blob.stat().st_ino == inode  # the very file the door wrote: no second copy
    assert blob.stat().st_nlink == 1  # the claim is gone
    [flow] = _flows(store)
    assert (flow.id, flow.filename, flow.sha256, flow.size, flow.source) == (
        flow_id,
        "a.xml",
        sha,
        1000,
        "sftp",
    )
    assert not list((tmp_path / "claims" / "acme").iterdir())


def test_without_a_hash_or_over_the_limit_the_ordinary_way(tmp_path: Path, store_url: str) -> None:
    intake, store = _intake(tmp_path, store_url, max_bytes=50)
    small, small_sha = _stage(intake, b"x" * 40)
    big, _ = _stage(intake, b"y" * 60)
    intake.take_staged("acme", small, "small.xml", None, 40, "sftp")
    intake.take_staged("acme", big, "big.xml", None, 60, "sftp")
    assert intake.wait_recorded(30)
    big_flow, small_flow = _flows(store)
    assert small_flow.sha256 == small_sha and intake.blobs.path_for(small_sha).read_bytes() == b"x" * 40
    assert big_flow.refused_reason is not None and big_flow.sha256 is None


def test_twins_in_one_group_commit_point_at_the_first(tmp_path: Path, store_url: str) -> None:
    _, store = _intake(tmp_path, store_url)
    now = datetime.now(UTC)
    rows = [
        dict(flow_id=f"F{i}", partner="acme", source="sftp", filename=f"f{i}.xml", size=3, sha256="ab" * 32,
             received_at=now, worker="t")
        for i in range(3)
    ]  # fmt: skip
    assert store.record_received_batch(rows) == [None, "F0", "F0"]
    assert store.record_received_batch(rows[:1]) == [None]  # idempotent on the flow id
    assert [f.duplicate_of for f in _flows(store)] == [None, "F0", "F0"]


def test_a_claim_left_by_a_crash_becomes_exactly_one_flow(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    intake, store = _intake(tmp_path, url)
    staged, sha = _stage(intake, b"<Invoice>1</Invoice>")
    # The process dies after the claim is durable (the close was answered) and before the recorder ran:
    # a claim made exactly as take_staged makes it, with nobody recording it.
    claim_dir = tmp_path / "claims" / "acme" / "20260101T000000000Z-0123456789"
    claim_dir.mkdir(parents=True)
    os.rename(staged, claim_dir / "c.xml")
    restarted, _ = _intake(tmp_path, url)
    assert restarted.recover() == 1
    assert restarted.recover() == 0
    [flow] = _flows(store)
    assert (flow.id, flow.filename, flow.sha256) == (claim_dir.name, "c.xml", sha)
    assert not claim_dir.exists()


def test_one_claim_failing_does_not_hold_up_the_others(tmp_path: Path) -> None:
    intake, store = _intake(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    bad, bad_sha = _stage(intake, b"<Invoice>bad</Invoice>")
    good, good_sha = _stage(intake, b"<Invoice>good</Invoice>")
    assert bad_sha[:2] != good_sha[:2]
    (tmp_path / "blobs" / bad_sha[:2]).write_bytes(b"")  # its blob directory cannot be made
    bad_id = intake.take_staged("acme", bad, "bad.xml", bad_sha, 22, "sftp")
    intake.take_staged("acme", good, "good.xml", good_sha, 23, "sftp")
    assert intake.wait_recorded(30)
    assert [f.filename for f in _flows(store)] == ["good.xml"]
    assert (tmp_path / "claims" / "acme" / bad_id / "bad.xml").exists()  # kept for recover() at restart
