"""Hardening (issues 15 §1 and 16): errors classified, crash settling, one verdict per file, the run lock,
intake edge cases, metrics, file modes, CLI errors, doctor and purge. Real parts throughout: the store
(SQLite and PostgreSQL), the validation process pool, the CLI and the daemon as subprocesses."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import DeliveryConfig, GatewayConfig, parse_config
from gateway.datadir import DataDir
from gateway.inbound.local_dir import FolderSource
from gateway.model import Identification
from gateway.outbound.base import SinkResolver
from gateway.outbound.local_dir import FolderDeliverySink
from gateway.runtime.delivery import DeliveryWorker
from gateway.runtime.intake import Intake
from gateway.runtime.pipeline import Pipeline
from gateway.runtime.routing import Router
from gateway.statemachine import FlowState
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.outbox import Outbox, enqueue
from gateway.store.queries import get_flow_detail
from gateway.telemetry.collectors import RulePackCollector
from gateway.telemetry.metrics import Metrics
from gateway.transforms.identify import Identifier
from gateway.validation.engine import ValidationEngine
from gateway.validation.plan import ValidationConfig
from gateway.validation.pool import ValidationPool
from gateway.validation.rulepacks import RulePackRegistry

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_ubl

REPO = Path(__file__).resolve().parents[1]
CEN_RELEASE = REPO.parent / "shared" / "artefacts" / "en16931-cen-1.3.16"
TERMINAL = ("ACKNOWLEDGED", "REJECTED")

WORLD_TOML = """
[workers]
max_attempts = 3
max_crashes = 2
backoff_base_seconds = 60

[metrics]
enabled = false

[sftp]
enabled = false

[partners.acme]
name = "ACME"
"""


class World:
    """A data dir with its store, intake and pipeline in this process (what `gateway run` wires)."""

    def __init__(self, root: Path, validator: object, identifier: Identifier | None = None,
                 extra_toml: str = "", store_url: str = "") -> None:  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        if store_url and not store_url.startswith("sqlite"):  # PostgreSQL: the store is elsewhere
            extra_toml += f'\n[store]\nurl = "{store_url}"\n'
        (root / "gateway.toml").write_text(WORLD_TOML + extra_toml)
        self.data_dir = DataDir(root)
        self.config: GatewayConfig = self.data_dir.load_config()
        self.data_dir.prepare(self.config)
        self.store = Store(self.data_dir.database_url(self.config))
        self.store.migrate()
        self.blobs = BlobStore(self.data_dir.blobs, self.data_dir.tmp)
        self.metrics = Metrics()
        self.intake = Intake(self.store, self.blobs, self.data_dir.claims, 10_000_000, "t", self.metrics)
        self.pipeline = Pipeline(
            self.config, self.store, self.blobs, identifier or Identifier(), validator,  # type: ignore[arg-type]
            self.metrics, "w1", router=Router(self.config, self.blobs),
        )  # fmt: skip
        sinks = SinkResolver()
        sinks.register_prefix("partner:", lambda p: FolderDeliverySink(self.data_dir.outbox(self.config, p)))
        self.delivery = DeliveryWorker(
            self.store, Outbox(self.store, self.blobs), sinks, DeliveryConfig(), self.metrics, "d1"
        )

    def drop(self, name: str, data: bytes) -> str:
        path = self.data_dir.inbox(self.config, "acme") / name
        path.write_bytes(data)
        taken = self.intake.take("acme", path)
        assert taken is not None
        return taken.flow_id

    def run_once(self, now: datetime | None = None) -> FlowState | None:
        """One flow through the pipeline, then every due outbox row (its acknowledgement) to out/."""
        flow = self.store.claim_next("w1", 300, now=now)
        state = None if flow is None else self.pipeline.process(flow)
        while self.delivery.run_once(now=now):
            pass
        return state

    def acks(self) -> list[Path]:
        return sorted(self.data_dir.outbox(self.config, "acme").glob("*.ack.xml"))

    def flow(self, flow_id: str) -> dict[str, object]:
        detail = get_flow_detail(self.store, flow_id)
        assert detail is not None
        return detail


@pytest.fixture(scope="module")
def engine() -> ValidationEngine:
    return ValidationEngine(ValidationConfig(), RulePackRegistry(None))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


# -- issue 15 §1: transient versus permanent ------------------------------------------------------------
def test_a_crashed_validation_worker_fails_the_flow_and_is_never_a_rejection(tmp_path: Path) -> None:
    config = ValidationConfig(workers=1, br_fr=False)
    with ValidationPool(config, None) as pool:
        world = World(tmp_path / "data", pool)
        flow_id = world.drop("big.xml", make_ubl(lines=400, number="BIG-1"))
        result: dict[str, FlowState | None] = {}
        runner = threading.Thread(target=lambda: result.setdefault("state", world.run_once()))
        runner.start()
        wait_for(lambda: bool(pool.worker_pids()), 30, "a validation worker")
        os.kill(pool.worker_pids()[0], signal.SIGKILL)
        runner.join(60)
        assert result["state"] is FlowState.FAILED
        flow = world.flow(flow_id)["flow"]
        assert flow["attempts"] == 1 and flow["checkpoint"] == "TRANSFORMED"
        assert "ValidationUnavailable" in str(world.flow(flow_id)["events"][-1]["reason"])
        assert world.acks() == []  # nothing was sent to the partner
        retries = world.metrics.registry.get_sample_value("gateway_flow_retries_total", {"stage": "validate"})
        assert retries == 1
        # the retry (backoff elapsed) validates for real
        assert world.run_once(now=datetime.now(UTC) + timedelta(minutes=5)) is FlowState.ACKNOWLEDGED
        assert [read_ack(p)["status"] for p in world.acks()] == ["Ok"]


def test_a_document_that_times_out_twice_is_rejected_with_the_cause(tmp_path: Path) -> None:
    config = ValidationConfig(workers=1, br_fr=False, timeout_seconds=0.3)
    with ValidationPool(config, None) as pool:
        world = World(tmp_path / "data", pool)
        flow_id = world.drop("slow.xml", make_ubl(lines=1500, number="SLOW-1"))
        assert world.run_once() is FlowState.FAILED  # first timeout: maybe the machine, retried
        assert world.acks() == []
        assert world.run_once(now=datetime.now(UTC) + timedelta(minutes=5)) is FlowState.REJECTED
        ack = read_ack(world.acks()[0])
        assert ack["status"] == "Error" and ack["reasons"] == ["REJ_SEMAN"]
        assert "timed out after 0.3s (twice)" in str(ack["messages"][0])
        assert world.flow(flow_id)["invoices"][0]["reason_code"] == "REJ_SEMAN"


class BuggyIdentifier(Identifier):
    """The real identifier with a programming error on one file name (what a bug of ours looks like)."""

    def identify(self, data: bytes, filename: str) -> Identification:
        if filename == "bug.xml":
            return None.syntax  # type: ignore[attr-defined,no-any-return]  # AttributeError
        return super().identify(data, filename)


def test_a_programming_error_quarantines_at_once(tmp_path: Path, engine: ValidationEngine) -> None:
    world = World(tmp_path / "data", engine, identifier=BuggyIdentifier())
    flow_id = world.drop("bug.xml", make_ubl(lines=1, number="BUG-1"))
    assert world.run_once() is FlowState.QUARANTINED  # no retries: they would fail the same way
    flow = world.flow(flow_id)["flow"]
    assert flow["attempts"] == 0
    assert "programming error at identify: AttributeError" in str(flow["reason_message"])
    ack = read_ack(world.acks()[0])
    assert ack["status"] == "Pending" and ack["flow_status"] == "IN_EN_ATTENTE_RETRAITEMENT_CPP"


# -- issue 16 §5: one verdict per file ------------------------------------------------------------------
def test_quarantine_then_replay_never_gives_contradicting_verdicts(
    tmp_path: Path, engine: ValidationEngine
) -> None:
    world = World(tmp_path / "data", engine)
    flow_id = world.drop("q.xml", make_ubl(lines=1, number="Q-1"))
    for hours_ago in (3, 2):  # two processes died holding only this flow (their leases expired)
        assert world.store.claim_next("dead:1", 60, now=datetime.now(UTC) - timedelta(hours=hours_ago))
    assert world.run_once() is FlowState.QUARANTINED
    [held] = world.acks()
    first = read_ack(held)
    assert first["status"] == "Pending" and first["reasons"] == ["ERR_INTERNE"]  # not a verdict
    assert "held for an operator" in str(first["messages"][0])
    from lxml import etree

    etree.XMLSchema(etree.parse(str(REPO / "schemas" / "ack-1.xsd"))).assertValid(first["doc"].getroottree())
    assert main(["replay", flow_id, "--data-dir", str(world.data_dir.root)]) == 0
    assert world.run_once() is FlowState.ACKNOWLEDGED
    [final] = world.acks()
    assert final == held and read_ack(final)["status"] == "Ok"  # the only verdict, under the same name
    statuses = {read_ack(p)["status"] for p in world.acks()}
    assert not {"Ok", "Error"} <= statuses


def test_crashes_count_only_against_a_flow_alone_in_flight(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    now = datetime.now(UTC)

    def received(name: str) -> str:
        flow_id = f"20260101T000000000Z-{name:0>10}"
        store.record_received(flow_id=flow_id, partner="acme", source="folder", filename=name, size=1,
                              sha256=name.ljust(64, "0"), received_at=now, worker="t")  # fmt: skip
        return flow_id

    ids = [received(f"f{i}") for i in range(3)]
    lone = received("lone")
    try:
        for _ in range(2):  # two kills of a process with three flows in flight: nobody is charged
            for _ in ids:
                assert store.claim_next("host:100", 300, now=now, only=None) is not None
            assert sorted(store.settle_crashes(all_leases=True)) == sorted(ids)
            store.release_stale_leases(all_leases=True)
        with store.reader() as conn:
            claims = dict(conn.exec_driver_sql("SELECT id, claims FROM flows").fetchall())
        assert [claims[i] for i in ids] == [0, 0, 0]
        # a process that held one flow only: that flow is charged (it may be the one that kills us)
        assert store.claim_next("host:200", 300, now=now, only=lone) is not None
        assert store.settle_crashes(all_leases=True) == []
        store.release_stale_leases(all_leases=True)
        with store.reader() as conn:
            assert conn.exec_driver_sql(f"SELECT claims FROM flows WHERE id = '{lone}'").scalar() == 1
        # alone, but validating: validation runs in the pool's processes, it cannot kill the daemon
        with store.transaction() as conn:
            conn.exec_driver_sql(f"UPDATE flows SET state = 'TRANSFORMED' WHERE id = '{ids[0]}'")
        assert store.claim_next("host:300", 300, now=now, only=ids[0]) is not None
        assert store.settle_crashes(all_leases=True) == []
        store.release_stale_leases(all_leases=True)
        with store.reader() as conn:
            assert conn.exec_driver_sql(f"SELECT claims FROM flows WHERE id = '{ids[0]}'").scalar() == 0
    finally:
        store.close()


@pytest.mark.slow
def test_two_quick_sigkills_do_not_quarantine_flows_in_flight(tmp_path: Path) -> None:
    files = {f"big-{i}.xml": make_ubl(lines=600, number=f"BIG-{i}") for i in range(4)}

    def in_flight(d: Daemon) -> int:
        """Flows leased by the running process (leases a killed one left do not count)."""
        assert d.proc is not None
        with sqlite3.connect(d.data_dir / "gateway.db") as conn:
            query = "SELECT COUNT(*) FROM flows WHERE lease_owner LIKE ?"
            return int(conn.execute(query, (f"%:{d.proc.pid}",)).fetchone()[0])

    with Daemon(tmp_path / "data") as d:
        d.start()
        for name, data in files.items():
            d.drop(name, data)
        wait_for(lambda: in_flight(d) >= 2, 60, "two flows in flight", d)
        d.kill()
        d.start()
        wait_for(lambda: in_flight(d) >= 1, 60, "a flow in flight again", d)
        d.kill()
        d.start()
        wait_for(lambda: len(d.acks()) >= len(files), 180, "every ack", d)
        assert d.stop() == 0
        states = {name: state for _, name, state in d.flows()}
    assert states == dict.fromkeys(files, "ACKNOWLEDGED")
    for name in files:
        [ack] = d.acks_for(name)
        assert read_ack(ack)["status"] == "Ok"


# -- issue 16 §1: one daemon per data dir ---------------------------------------------------------------
@pytest.mark.slow
def test_a_second_run_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data") as d:
        d.start()
        d.drop("before.xml", make_ubl(lines=1, number="L-1"))
        started = time.monotonic()
        second = run_cli("run", "--data-dir", str(d.data_dir))
        assert time.monotonic() - started < 20
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "is in use by another gateway run (pid" in lines[0], second.stderr
        assert f"pid {d.proc.pid}" in lines[0]  # type: ignore[union-attr]
        # the first daemon is untouched: its work goes on (nothing recovered under it)
        d.drop("after.xml", make_ubl(lines=1, number="L-2"))
        wait_for(lambda: len(d.acks()) >= 2, 60, "both acks", d)
        assert d.stop() == 0
    assert DataDir(d.data_dir).run_lock_holder() is None  # once it is gone, the data dir is free again


# -- issue 16 §6: intake edge cases ---------------------------------------------------------------------
def test_every_empty_file_is_answered_irr_vid_f(tmp_path: Path, engine: ValidationEngine) -> None:
    world = World(tmp_path / "data", engine)
    first = world.drop("empty-1.xml", b"")
    second = world.drop("empty-2.xml", b"")
    blank = world.drop("blank-1.xml", b"  \n")
    blank2 = world.drop("blank-2.xml", b"  \n")
    while world.run_once() is not None:
        pass
    for flow_id in (first, second, blank, blank2):
        flow = world.flow(flow_id)["flow"]
        assert flow["state"] == "REJECTED" and flow["reason_code"] == "IRR_VID_F", flow
    assert world.flow(blank2)["flow"]["duplicate_of"] == blank  # still known as a copy, answered as empty


def test_entries_that_are_not_files_are_reported_once_and_left_alone(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a-folder").mkdir()
    (inbox / "link.xml").symlink_to("/etc/passwd")
    os.mkfifo(inbox / "pipe.xml")
    taken: list[Path] = []
    skipped: list[tuple[str, str, str]] = []
    source = FolderSource({"acme": inbox}, 0.0, 1, lambda _p, path: taken.append(path), watch=False,
                          on_skipped=lambda p, path, kind: skipped.append((p, path.name, kind)))  # fmt: skip
    source.scan_once()
    source.scan_once()
    assert sorted(skipped) == [("acme", "a-folder", "directory"), ("acme", "link.xml", "symlink"),
                               ("acme", "pipe.xml", "special")]  # fmt: skip
    assert taken == []
    (inbox / "a-folder").rmdir()
    source.scan_once()
    (inbox / "a-folder").mkdir()  # back again: reported again
    source.scan_once()
    assert [s for s in skipped if s[1] == "a-folder"] == [("acme", "a-folder", "directory")] * 2


def test_the_daemon_counts_a_directory_dropped_in_in(tmp_path: Path, engine: ValidationEngine) -> None:
    from gateway.runtime.supervisor import Gateway

    root = tmp_path / "data"
    root.mkdir()
    (root / "gateway.toml").write_text(WORLD_TOML)
    data_dir = DataDir(root)
    gateway = Gateway(data_dir, data_dir.load_config(), identifier=Identifier(), validator=engine)
    try:
        gateway.prepare()
        (data_dir.inbox(gateway.config, "acme") / "not-a-file").mkdir()
        gateway.folder_source.scan_once()
        gateway.folder_source.scan_once()  # counted once while it stays
        registry = gateway.metrics.registry
        labels = {"partner": "acme", "kind": "directory"}
        assert registry.get_sample_value("gateway_intake_skipped_total", labels) == 1
    finally:
        gateway.store.close()


# -- issue 16 §7: rejection metrics and the REASON column ---------------------------------------------
def test_invoice_rejections_are_counted_and_shown(
    tmp_path: Path, engine: ValidationEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    from lxml import etree

    world = World(tmp_path / "data", engine)
    bad = etree.fromstring(make_ubl(lines=1, number="BAD-1"))
    payable = bad.find(
        ".//{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}PayableAmount"
    )
    payable.text = "999.99"  # type: ignore[union-attr]
    bad_id = world.drop("bad.xml", etree.tostring(bad))
    world.drop("junk.xml", b"<not-closed")
    while world.run_once() is not None:
        pass
    assert world.flow(bad_id)["flow"]["state"] == "REJECTED"
    registry = world.metrics.registry
    assert registry.get_sample_value("gateway_flows_rejected_total", {"reason": "REJ_SEMAN"}) == 1
    assert registry.get_sample_value("gateway_flows_rejected_total", {"reason": "IRR_SYNTAX"}) == 1
    assert main(["flows", "--data-dir", str(world.data_dir.root)]) == 0
    lines = {line.split()[-2]: line for line in capsys.readouterr().out.splitlines() if ".xml" in line}
    assert lines["bad.xml"].endswith("[REJ_SEMAN]") and lines["junk.xml"].endswith("[IRR_SYNTAX]")


def test_rule_pack_info_follows_installs_without_a_restart(tmp_path: Path) -> None:
    if not (CEN_RELEASE / "cii" / "xslt" / "EN16931-CII-validation.xslt").is_file():
        pytest.skip(f"CEN EN 16931 release not found at {CEN_RELEASE}")
    rules = tmp_path / "rules"
    rules.mkdir()
    metrics = Metrics()
    metrics.registry.register(RulePackCollector(rules))

    def packs() -> set[str]:
        return {s.labels["pack"] for f in metrics.registry.collect() if f.name == "gateway_rule_pack_info"
                for s in f.samples}  # fmt: skip

    before = packs()
    assert before and "cen-en16931" not in before
    assert main(["rules", "install", str(CEN_RELEASE), "--rules-dir", str(rules)]) == 0
    assert packs() == before | {"cen-en16931"}
    assert main(["rules", "remove", "cen-en16931", "--rules-dir", str(rules)]) == 0
    assert packs() == before


# -- issue 16 §13: file modes ---------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.slow
def test_files_are_private_and_partner_folders_group_readable(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    fresh = DataDir(root)
    old = os.umask(0o077)  # what `gateway run` sets before it creates anything
    try:  # the data dir as a first start creates it
        fresh.create_root()
        assert fresh.write_default_config()
        fresh.prepare(parse_config({"partners": {"acme": {}}}))
    finally:
        os.umask(old)
    assert _mode(root) == 0o700 and _mode(root / "gateway.toml") == 0o600
    assert _mode(root / "gateway.db") == 0o600 and _mode(root / "spool") == 0o700
    assert _mode(root / "partners" / "acme") == 0o750 and _mode(root / "partners" / "acme" / "in") == 0o750

    with Daemon(tmp_path / "data") as d:  # a data dir made by hand (0644 config) by an operator
        (d.data_dir / "gateway.toml").chmod(0o644)
        d.start()
        d.drop("one.xml", make_ubl(lines=1, number="M-1"))
        wait_for(lambda: len(d.acks()) >= 1, 60, "the ack", d)
        assert d.stop() == 0
    assert _mode(d.data_dir / "gateway.toml") == 0o600
    for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        if (d.data_dir / name).exists():
            assert _mode(d.data_dir / name) == 0o600, name
    assert {_mode(p) for p in (d.data_dir / "spool" / "blobs").rglob("*") if p.is_file()} == {0o600}
    assert _mode(d.acks()[0]) == 0o600
    assert _mode(d.outbox()) == 0o750 and _mode(d.data_dir / "spool") == 0o700


# -- issue 16 §14: one-line errors, pipes, version ------------------------------------------------------
def test_version() -> None:
    from gateway import __version__

    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"gateway {__version__}"


def test_a_read_only_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    (root / "gateway.toml").write_text(WORLD_TOML)
    mounted = False
    if os.geteuid() == 0:  # root writes anywhere but on a read-only file system: bind-mount it read-only
        if subprocess.run(["mount", "--bind", str(root), str(root)], capture_output=True).returncode != 0:
            pytest.skip("cannot bind-mount here (no CAP_SYS_ADMIN)")
        mounted = True
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True)
    else:
        root.chmod(0o555)
    try:
        done = run_cli("run", "--data-dir", str(root))
    finally:
        if mounted:
            subprocess.run(["umount", str(root)], check=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(root) in lines[0], done.stderr
    assert "Read-only file system" in lines[0] or "Permission denied" in lines[0]


def test_a_closed_pipe_is_no_traceback(tmp_path: Path, engine: ValidationEngine) -> None:
    world = World(tmp_path / "data", engine)
    for i in range(3):
        world.drop(f"f-{i}.xml", make_ubl(lines=1, number=f"P-{i}"))
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "flows", "--data-dir", str(world.data_dir.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` that has read enough
    stderr = proc.stderr.read().decode()
    proc.wait(60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert proc.returncode == 141


# -- issue 16 §15: --demo twice -------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_twice_answers_new_files(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data") as d:
        d.start("--demo")
        wait_for(lambda: len(d.acks()) >= 7, 120, "acks of the first demo", d)
        assert d.stop() == 0
        d.start("--demo")
        wait_for(lambda: len(d.acks()) >= 14, 120, "acks of the second demo", d)
        assert d.stop() == 0
    reasons = [r for p in d.acks() for r in read_ack(p)["reasons"]]  # type: ignore[attr-defined]
    assert "AlreadyExistingFlow" not in reasons
    assert reasons.count("IRR_VID_F") == 2


# -- doctor and purge -----------------------------------------------------------------------------------
def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def test_doctor_reports_clean_then_each_inconsistency(
    tmp_path: Path, engine: ValidationEngine, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    world = World(tmp_path / "data", engine, store_url=store_url)
    done = world.drop("done.xml", make_ubl(lines=1, number="D-1"))
    other = world.drop("other.xml", make_ubl(lines=1, number="D-2"))
    assert world.run_once() is FlowState.ACKNOWLEDGED
    assert world.run_once() is FlowState.ACKNOWLEDGED
    pending = world.drop("pending.xml", make_ubl(lines=1, number="D-3"))
    root = str(world.data_dir.root)
    assert main(["doctor", "--data-dir", root]) == 0
    assert capsys.readouterr().out.strip().endswith("doctor: clean")

    out = world.data_dir.outbox(world.config, "acme")
    world.blobs.path_for(str(world.flow(pending)["flow"]["sha256"])).unlink()  # an unfinished flow's blob
    done_ack = out / str(world.flow(done)["flow"]["ack_name"])
    done_ack.unlink()
    other_ack = out / str(world.flow(other)["flow"]["ack_name"])
    other_ack.unlink()
    with world.store.transaction() as conn:  # as if its delivery had given up
        conn.exec_driver_sql(f"UPDATE outbox SET state = 'dead' WHERE flow_id = '{other}'")
    part = out / "x.ack.xml.part"
    part.write_bytes(b"half")
    _age(part, 120)
    stray = out / "a.xml.20250101T000000000Z-0123456789.ack.xml"
    stray.write_bytes(b"<ack/>")
    claim = world.data_dir.claims / "acme" / "20250101T000000000Z-abcdefabcd"
    claim.mkdir(parents=True)
    (claim / "f.xml").write_bytes(b"x")
    _age(claim / "f.xml", 120)
    _age(claim, 120)
    tmp_blob = world.data_dir.tmp / "0123.blob"
    tmp_blob.write_bytes(b"x")
    _age(tmp_blob, 120)
    assert world.store.claim_next("somehost:1", 300, only=pending) is not None  # then that process died
    with world.store.transaction() as conn:
        conn.exec_driver_sql(
            f"UPDATE flows SET lease_owner = '{os.uname().nodename}:999999' WHERE id = '{pending}'"
        )

    assert main(["doctor", "--data-dir", root]) == 1
    report = capsys.readouterr().out
    for kind in ("blob_missing", "ack_missing", "part_left", "ack_without_flow", "claim_left", "tmp_left",
                 "lease_of_dead_process", "ack_dead"):  # fmt: skip
        assert f"PROBLEM  {kind}:" in report, (kind, report)
    assert report.strip().endswith("doctor: 8 problem(s)")
    assert part.exists() and stray.exists() and claim.exists()  # read-only


def test_purge_keeps_what_unfinished_work_needs(
    tmp_path: Path, engine: ValidationEngine, capsys: pytest.CaptureFixture[str], store_url: str
) -> None:
    world = World(tmp_path / "data", engine, extra_toml="\n[retention]\nack_days = 30\nblob_days = 60\n",
                  store_url=store_url)  # fmt: skip
    old_done = world.drop("old.xml", make_ubl(lines=1, number="R-1"))
    assert world.run_once() is FlowState.ACKNOWLEDGED
    new_done = world.drop("new.xml", make_ubl(lines=1, number="R-2"))
    assert world.run_once() is FlowState.ACKNOWLEDGED
    outboxed = world.drop("outboxed.xml", make_ubl(lines=1, number="R-4"))
    assert world.run_once() is FlowState.ACKNOWLEDGED
    unfinished = world.drop("held.xml", make_ubl(lines=1, number="R-3"))  # not processed: RECEIVED
    flows = {fid: world.flow(fid)["flow"] for fid in (old_done, new_done, unfinished, outboxed)}
    with world.store.transaction() as conn:  # received long ago (all but new.xml)
        for fid in (old_done, unfinished, outboxed):
            conn.exec_driver_sql(f"UPDATE flows SET received_at = '2020-01-01 00:00:00' WHERE id = '{fid}'")
        # an undelivered outbox row (a delivery to a sink that is down) holds outboxed.xml's content
        enqueue(conn, kind="delivery", sink="partner:elsewhere", remote_name="outboxed.xml",
                payload_sha256=str(flows[outboxed]["sha256"]), flow_id=outboxed)  # fmt: skip
    blobs = {fid: world.blobs.path_for(str(f["sha256"])) for fid, f in flows.items()}
    out = world.data_dir.outbox(world.config, "acme")
    with world.store.transaction() as conn:  # answered long ago too
        for fid in (old_done, outboxed):
            conn.exec_driver_sql(f"UPDATE flows SET completed_at = '2020-01-01 00:01:00' WHERE id = '{fid}'")
    for path in [
        *blobs.values(),
        out / str(flows[old_done]["ack_name"]),
        out / str(flows[outboxed]["ack_name"]),
    ]:
        _age(path, 90 * 86400)
    _age(blobs[new_done], 90 * 86400)  # an old file, but its flow is recent: kept
    old_ack = out / str(flows[old_done]["ack_name"])
    root = str(world.data_dir.root)

    assert main(["purge", "--dry-run", "--data-dir", root]) == 0
    dry = capsys.readouterr().out
    assert f"would delete {old_ack}" in dry and f"would delete {blobs[old_done]}" in dry
    assert old_ack.exists() and blobs[old_done].exists()

    assert main(["purge", "--data-dir", root]) == 0
    assert not old_ack.exists() and not blobs[old_done].exists()
    assert (out / str(flows[new_done]["ack_name"])).exists()
    assert blobs[unfinished].exists() and blobs[outboxed].exists() and blobs[new_done].exists()
    assert "2 old blob(s) kept for unfinished work" in capsys.readouterr().out
    assert main(["doctor", "--data-dir", root]) == 0  # what retention removed is no inconsistency
