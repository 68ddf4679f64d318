"""Intake: stability rule, temp names, claim + blob + row, and recovery of claims left by a crash."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.inbound.local_dir import FolderSource, StabilityTracker, is_temporary_name
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.queries import get_flow_detail, list_flows
from gateway.telemetry.metrics import Metrics


def test_temporary_names() -> None:
    for name in ("a.part", "a.filepart", "A.TMP", "~a.xml", ".hidden", ".sftp-1-a.xml"):
        assert is_temporary_name(name), name
    for name in ("a.xml", "invoice.pdf", "batch.zip", "part.xml"):
        assert not is_temporary_name(name), name


def test_stability_needs_two_identical_looks_and_min_age() -> None:
    tracker = StabilityTracker(min_age=1.0)
    p = Path("/x")
    assert not tracker.observe(p, 10, 1_000_000_000, now=100.0, wall_now=200.0)
    assert not tracker.observe(p, 10, 1_000_000_000, now=100.5, wall_now=200.5)  # too young
    assert not tracker.observe(p, 11, 1_000_000_000, now=101.5, wall_now=201.5)  # grew: starts again
    assert not tracker.observe(p, 11, 1_000_000_000, now=102.0, wall_now=202.0)
    assert tracker.observe(p, 11, 1_000_000_000, now=102.6, wall_now=202.6)


def _intake(tmp_path: Path) -> tuple[Intake, Store]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    for d in ("claims", "blobs", "tmp"):
        (tmp_path / d).mkdir()
    intake = Intake(
        store, BlobStore(tmp_path / "blobs", tmp_path / "tmp"), tmp_path / "claims", 50, "t", Metrics()
    )
    return intake, store


def test_take_records_flow_and_releases_claim(tmp_path: Path) -> None:
    intake, store = _intake(tmp_path)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.xml").write_bytes(b"<a/>")
    (inbox / "big.xml").write_bytes(b"x" * 51)
    (inbox / "a.xml.part").write_bytes(b"<a")
    source = FolderSource({"acme": inbox}, min_age=0.0, scan_interval=1, take=intake.take, watch=False)
    old = 1_000_000_000
    for name in ("a.xml", "big.xml", "a.xml.part"):
        os.utime(inbox / name, ns=(old, old))
    assert source.scan_once() == 0  # first look
    assert source.scan_once() == 2
    assert sorted(p.name for p in inbox.iterdir()) == ["a.xml.part"]
    flows = {f["filename"]: f for f in list_flows(store)}
    assert flows["a.xml"]["sha256"] and flows["a.xml"]["size"] == 4
    assert flows["big.xml"]["refused_reason"] == "IRR_TAILLE_F" and flows["big.xml"]["sha256"] is None
    assert not any((tmp_path / "claims").rglob("*.xml"))
    blob = BlobStore(tmp_path / "blobs", tmp_path / "tmp").read(flows["a.xml"]["sha256"])
    assert blob == b"<a/>"


def test_recover_finishes_claims_left_by_a_crash(tmp_path: Path) -> None:
    intake, store = _intake(tmp_path)
    claims = tmp_path / "claims" / "acme"
    claims.mkdir(parents=True)
    # crash after the claim rename, before the row: recorded now under the same flow id
    (claims / "20261124T000000000Z-aaaaaaaaaa__one.xml").write_bytes(b"<one/>")
    # crash after the row commit, before the claim delete: only the claim goes
    intake.take("acme", _drop(tmp_path, "two.xml"))
    committed = list_flows(store)[0]["id"]
    (claims / f"{committed}__two.xml").write_bytes(b"<two/>")
    assert intake.recover() == 1
    assert not list(claims.iterdir())
    assert sorted(f["filename"] for f in list_flows(store)) == ["one.xml", "two.xml"]
    assert get_flow_detail(store, "20261124T000000000Z-aaaaaaaaaa") is not None


def _drop(tmp_path: Path, name: str) -> Path:
    inbox = tmp_path / "in"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(b"<x/>")
    return inbox / name


def test_file_names_that_are_not_utf8_or_very_long_are_answered(tmp_path: Path) -> None:
    from gateway.transforms.ack_build import ack_file_name

    intake, store = _intake(tmp_path)
    inbox = tmp_path / "in"
    inbox.mkdir()
    odd = Path(os.fsdecode(bytes(inbox) + b"/inv\xff\nx.xml"))
    odd.write_bytes(b"<a/>")
    taken = intake.take("acme", odd)
    assert taken is not None and taken.filename == "inv\ufffd\nx.xml"
    long_name = "é" * 127 + ".xml"  # 258 bytes: longer than a Linux file name may be
    name = ack_file_name(long_name, taken.flow_id, "json")
    assert len((name + ".part").encode()) <= 255 and name.endswith(f".{taken.flow_id}.ack.json")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).write_bytes(b"{}")  # the file system accepts it


def test_names_of_255_bytes_are_claimed_and_recorded(tmp_path: Path) -> None:
    """The claim keeps the name in a per-flow directory: no ENAMETOOLONG whatever the name's length."""
    intake, store = _intake(tmp_path)
    name = "a" * 251 + ".xml"
    taken = intake.take("acme", _drop(tmp_path, name))
    assert taken is not None and taken.filename == name
    assert [f["filename"] for f in list_flows(store)] == [name]
    assert not list((tmp_path / "claims" / "acme").iterdir())


def test_take_bytes_is_durable_and_recovered_like_a_file(tmp_path: Path) -> None:
    intake, store = _intake(tmp_path)
    taken = intake.take_bytes("acme", b"<b/>", "../../etc/.passwd", "api")
    assert taken.filename == "../../etc/.passwd"  # shown as given; never used as a path
    flow = get_flow_detail(store, taken.flow_id)
    assert flow is not None and flow["flow"]["source"] == "api" and flow["flow"]["size"] == 4
    claims = tmp_path / "claims" / "acme"
    # crash after the data was durable, before the row: recovered under the same flow id
    (claims / "20261124T000000000Z-bbbbbbbbbb").mkdir()
    (claims / "20261124T000000000Z-bbbbbbbbbb" / "c.xml").write_bytes(b"<c/>")
    # crash while the bytes were being written: nothing was confirmed, the temporary file goes
    (claims / "20261124T000000000Z-cccccccccc").mkdir()
    (claims / "20261124T000000000Z-cccccccccc" / ".incoming").write_bytes(b"<c")
    assert intake.recover() == 1
    assert not list(claims.iterdir())
    assert get_flow_detail(store, "20261124T000000000Z-bbbbbbbbbb") is not None
    assert get_flow_detail(store, "20261124T000000000Z-cccccccccc") is None
