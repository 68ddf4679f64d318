"""The SFTP push sink under the real delivery worker and outbox (SQLite and PostgreSQL) against a real
OpenSSH sshd: server down then up (retry with backoff, then delivered once), wrong host key (dead at
once, nothing sent), a worker dying between "sent" and "recorded" (re-sent under the same name: one file)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncssh
import pytest
from sqlalchemy import select

from gateway.config import DeliveryConfig
from gateway.outbound.base import SinkResolver
from gateway.outbound.sftp_push import SftpPushSink, SftpSinkConfig
from gateway.runtime.delivery import DeliveryWorker
from gateway.store.db import Store, utcnow
from gateway.store.models import OutboxRow
from gateway.store.outbox import DEAD, PENDING, SENT, Outbox, enqueue
from gateway.telemetry.metrics import Metrics

from sshd_harness import SshdHarness, running_sshd

PAYLOAD = b"<Invoice>delivered once</Invoice>"
NAME = "F0001-001-INV-1.xml"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdHarness]:
    yield from running_sshd(tmp_path / "sshd")


@pytest.fixture
def store(store_url: str) -> Store:
    s = Store(store_url)
    s.migrate()
    return s


class Rig:
    def __init__(self, store: Store, sshd: SshdHarness, known_hosts: Path | None = None) -> None:
        self.store = store
        self.sink = SftpPushSink(
            SftpSinkConfig(
                host="127.0.0.1",
                port=sshd.port,
                username=sshd.user,
                known_hosts=str(known_hosts or sshd.known_hosts),
                private_key=str(sshd.client_key_path),
                remote_dir=str(sshd.upload_dir),
                connect_timeout_seconds=5,
            )
        )
        resolver = SinkResolver()
        resolver.register("remote", self.sink)
        self.metrics = Metrics()
        self.outbox = Outbox(store)
        config = DeliveryConfig(max_attempts=5, backoff_base_seconds=10, lease_seconds=30)
        self.worker = DeliveryWorker(store, self.outbox, resolver, config, self.metrics, "w1")
        with store.transaction() as conn:
            self.row = enqueue(conn, kind="delivery", sink="remote", remote_name=NAME, payload=PAYLOAD)

    def state(self) -> tuple[str, int]:
        with self.store.reader() as conn:
            row = conn.execute(
                select(OutboxRow.state, OutboxRow.attempts).where(OutboxRow.id == self.row)
            ).one()
        return row.state, row.attempts

    def counted(self, result: str) -> float:
        sample = self.metrics.registry.get_sample_value(
            "gateway_deliveries_total", {"sink": "remote", "result": result}
        )
        return sample or 0.0


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.sink.close()


def test_server_down_then_up_delivers_once(store: Store, sshd: SshdHarness, rigs: list[Rig]) -> None:
    rig = Rig(store, sshd)
    rigs.append(rig)
    sshd.stop()
    start = utcnow()
    assert rig.worker.run_once(now=start)
    assert rig.state() == (PENDING, 1) and rig.counted("retry") == 1
    assert sshd.files() == {}
    sshd.start()
    assert not rig.worker.run_once(now=start + timedelta(seconds=5))  # backing off (10 s)
    assert rig.worker.run_once(now=start + timedelta(seconds=60))
    assert rig.state() == (SENT, 2) and rig.counted("ok") == 1
    assert sshd.files() == {NAME: PAYLOAD}
    assert not rig.worker.run_once(now=start + timedelta(seconds=3600))  # nothing left to send


def test_wrong_host_key_is_dead_at_once(
    store: Store, sshd: SshdHarness, rigs: list[Rig], tmp_path: Path
) -> None:
    wrong = tmp_path / "known_hosts"
    wrong.write_text(sshd.known_hosts_line(asyncssh.generate_private_key("ssh-ed25519")))
    rig = Rig(store, sshd, known_hosts=wrong)
    rigs.append(rig)
    assert rig.worker.run_once()
    assert rig.state() == (DEAD, 1) and rig.counted("dead") == 1
    with store.reader() as conn:
        error = conn.execute(select(OutboxRow.last_error).where(OutboxRow.id == rig.row)).scalar_one()
    assert "HostKeyRejected" in error and "host key not trusted" in error
    assert sshd.files() == {}


def test_crash_between_sent_and_recorded_resends_the_same_name(
    store: Store, sshd: SshdHarness, rigs: list[Rig]
) -> None:
    rig = Rig(store, sshd)
    rigs.append(rig)
    start = utcnow()
    item = rig.outbox.claim("dying-worker", 30, now=start)
    assert item is not None
    rig.sink.send(item, rig.outbox.payload(item))  # sent, then the worker dies before recording it
    assert rig.state() == (PENDING, 1)
    assert not rig.worker.run_once(now=start + timedelta(seconds=10))  # still leased
    assert rig.worker.run_once(now=start + timedelta(seconds=31))  # lease expired: sent again
    assert rig.state() == (SENT, 2)
    assert sshd.files() == {NAME: PAYLOAD}  # one file, the same name
