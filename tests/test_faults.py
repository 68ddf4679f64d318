"""Fault suite (issue 16): the daemon is SIGKILLed at seeded random moments while files keep arriving in
two partners' folders, and validation workers are killed mid-document in between. Afterwards every file has exactly one flow and one acknowledgement, the expected
verdict (no `Pending`: nobody innocent was quarantined), nothing is left in claim/tmp or as `.part`, and
`gateway doctor` reports the install clean. Bounded to a couple of minutes; FAULT_KILLS=20 for a long run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_cii, make_ubl

SEED = int(os.environ.get("FAULT_SEED", "16"))
KILLS = int(os.environ.get("FAULT_KILLS", "8"))  # half of them kill a validation worker instead
FILES_PER_PARTNER = int(os.environ.get("FAULT_FILES", "60"))


def _files(partner: str) -> dict[str, tuple[bytes, str]]:
    """name → (content, expected Status)."""
    files: dict[str, tuple[bytes, str]] = {}
    for i in range(FILES_PER_PARTNER):
        if i % 10 == 3:
            files[f"{partner}-bad-{i:03d}.xml"] = (f"<not-closed-{partner}-{i}".encode(), "Error")
        elif i % 10 == 7:
            files[f"{partner}-cii-{i:03d}.xml"] = (make_cii(lines=2, number=f"{partner}-C-{i}"), "Ok")
        else:
            files[f"{partner}-ubl-{i:03d}.xml"] = (make_ubl(lines=3, number=f"{partner}-U-{i}"), "Ok")
    return files


def validation_workers(pid: int) -> list[int]:
    """The daemon's validation worker processes (multiprocessing spawn children, not its resource tracker)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, …
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            workers.append(int(stat.parent.name))
    return workers


@pytest.mark.slow
def test_sigkills_while_files_arrive_leave_one_flow_and_one_verdict_per_file(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    partners = ("demo", "acme")
    expected = {p: _files(p) for p in partners}
    drops = [(p, name, data) for p in partners for name, (data, _) in expected[p].items()]
    rng.shuffle(drops)
    pauses = [rng.uniform(0.0, 0.08) for _ in drops]
    kill_after = [rng.uniform(0.8, 3.5) for _ in range(KILLS)]

    with Daemon(tmp_path / "data") as d:
        d.start()
        dropping_done = threading.Event()

        def drop_all() -> None:
            for (partner, name, data), pause in zip(drops, pauses, strict=True):
                d.drop(name, data, partner)
                time.sleep(pause)  # arrival pace of the partners, not a wait for the daemon
            dropping_done.set()

        dropper = threading.Thread(target=drop_all, daemon=True)
        dropper.start()
        worker_kills = 0
        for n, delay in enumerate(kill_after):
            time.sleep(delay)  # the kill lands at a seeded random moment of the daemon's work
            assert d.proc is not None
            if n % 2 == 1:  # every other fault: a validation worker dies mid-document (transient)
                daemon_pid = d.proc.pid
                wait_for(lambda pid=daemon_pid: bool(validation_workers(pid)), 60, "a validation worker", d)
                os.kill(validation_workers(daemon_pid)[0], signal.SIGKILL)
                worker_kills += 1
                continue
            d.kill()
            d.start()
        dropper.join(120)
        assert dropping_done.is_set()
        total = len(drops)
        wait_for(lambda: sum(len(d.acks(p)) for p in partners) >= total, 300, f"{total} acks", d)
        assert d.stop() == 0
    assert worker_kills == KILLS // 2

    flows = d.flows()
    with sqlite3.connect(d.data_dir / "gateway.db") as conn:
        held = list(conn.execute("SELECT filename, reason_message FROM flows WHERE state = 'QUARANTINED'"))
    assert held == [], held
    assert sorted(name for _, name, _ in flows) == sorted(name for _, name, _ in drops)  # one flow each
    assert {state for _, _, state in flows} <= {"ACKNOWLEDGED", "REJECTED"}
    for partner in partners:
        for name, (_, status) in expected[partner].items():
            acks = d.acks_for(name, partner)
            assert len(acks) == 1, (name, acks)
            assert read_ack(acks[0])["status"] == status, name  # no Pending, no contradicting verdict
        assert not list(d.outbox(partner).glob("*.part"))
        assert not list(d.inbox(partner).iterdir())
    spool = d.data_dir / "spool"
    assert not [p for p in (spool / "claim").rglob("*") if p.is_file()]
    assert not list((spool / "tmp").iterdir())
    doctor = subprocess.run([sys.executable, "-m", "gateway.cli", "doctor", "--data-dir", str(d.data_dir)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.strip().endswith("doctor: clean")
