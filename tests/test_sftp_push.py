"""SFTP push sink against a real OpenSSH sshd on a loopback port (and the gateway's own SFTP server for
password login): right bytes and name, no `.part` left, wrong host key refused, server down then up,
same name re-sent overwrites."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh
import pytest
from pydantic import SecretStr, ValidationError

from gateway.inbound.sftp_config import SftpPartnerAuth
from gateway.inbound.sftp_server import hash_password
from gateway.outbound.base import OutboxItem, PermanentSinkError, TransientSinkError
from gateway.outbound.sftp_push import HostKeyRejected, SftpPushSink, SftpSinkConfig, build_sftp_sink

from sshd_harness import SshdHarness, running_sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdHarness]:
    yield from running_sshd(tmp_path / "sshd")


_OPEN: list[SftpPushSink] = []  # sinks a test built, closed after it (their loop threads end)


@pytest.fixture(autouse=True)
def _close_sinks() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def track(sink: SftpPushSink) -> SftpPushSink:
    _OPEN.append(sink)
    return sink


def item(name: str, payload: bytes, attempts: int = 0) -> OutboxItem:
    return OutboxItem(
        id=1,
        kind="delivery",
        sink="remote",
        remote_name=name,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        flow_id="f1",
        invoice_id=1,
        meta={},
        attempts=attempts,
    )


def sink_for(server: SshdHarness, **overrides: object) -> SftpPushSink:
    fields: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.user,
        "known_hosts": str(server.known_hosts),
        "private_key": str(server.client_key_path),
        "remote_dir": str(server.upload_dir),
        "connect_timeout_seconds": 5,
        "transfer_timeout_seconds": 20,
    }
    fields.update(overrides)
    return track(build_sftp_sink(SftpSinkConfig.model_validate(fields)))


def test_config_is_strict() -> None:
    base = {"host": "h", "username": "u", "known_hosts": "kh", "private_key": "k"}
    assert SftpSinkConfig.model_validate(base).port == 22
    with pytest.raises(ValidationError, match="private_key or password"):
        SftpSinkConfig.model_validate({"host": "h", "username": "u", "known_hosts": "kh"})
    with pytest.raises(ValidationError):
        SftpSinkConfig.model_validate({**base, "accept_any_host_key": True})
    with pytest.raises(ValidationError):
        SftpSinkConfig.model_validate({"host": "h", "username": "u", "password": "p"})  # known_hosts required
    assert "secret" not in repr(SftpSinkConfig.model_validate({**base, "password": "secret"}))


def test_upload_delivers_the_bytes_under_the_name(sshd: SshdHarness) -> None:
    payload = b"<Invoice>" + bytes(range(256)) * 4000 + b"</Invoice>"  # ~1 MB, binary-safe
    receipt = sink_for(sshd).send(item("INV-1.xml", payload), payload)
    assert sshd.files() == {"INV-1.xml": payload}  # no .part left beside it
    assert "INV-1.xml" in receipt and str(len(payload)) in receipt


def test_same_name_resent_overwrites(sshd: SshdHarness) -> None:
    sink = sink_for(sshd)
    sink.send(item("INV-2.xml", b"first attempt"), b"first attempt")
    (sshd.upload_dir / "INV-2.xml.part").write_bytes(b"left by a crash during a later attempt")
    sink.send(item("INV-2.xml", b"the re-send", attempts=1), b"the re-send")
    assert sshd.files() == {"INV-2.xml": b"the re-send"}


def test_wrong_host_key_refused_nothing_uploaded(sshd: SshdHarness, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(sshd.known_hosts_line(other))
    with pytest.raises(HostKeyRejected, match="host key not trusted") as info:
        sink_for(sshd, known_hosts=str(wrong)).send(item("INV-3.xml", b"secret"), b"secret")
    assert isinstance(info.value, PermanentSinkError)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected):
        sink_for(sshd, known_hosts=str(empty)).send(item("INV-3.xml", b"secret"), b"secret")
    assert sshd.files() == {}
    assert "Accepted publickey" not in sshd.log.read_text()  # we never authenticated to that server


def test_missing_known_hosts_is_permanent(sshd: SshdHarness, tmp_path: Path) -> None:
    with pytest.raises(PermanentSinkError, match="known_hosts file"):
        sink_for(sshd, known_hosts=str(tmp_path / "absent")).send(item("a.xml", b"x"), b"x")


def test_refused_key_is_permanent(sshd: SshdHarness, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    with pytest.raises(PermanentSinkError, match="authentication refused"):
        sink_for(sshd, private_key=str(stranger)).send(item("a.xml", b"x"), b"x")
    assert sshd.files() == {}


def test_missing_remote_dir_is_permanent(sshd: SshdHarness) -> None:
    with pytest.raises(PermanentSinkError, match="no-such-dir"):
        sink_for(sshd, remote_dir=str(sshd.upload_dir / "no-such-dir")).send(item("a.xml", b"x"), b"x")


def test_unsafe_names_refused(sshd: SshdHarness) -> None:
    for name in ("../escape.xml", ".hidden", "", "a/b.xml"):
        with pytest.raises(PermanentSinkError, match="unsafe"):
            sink_for(sshd).send(item(name, b"x"), b"x")
    assert sshd.files() == {}


def test_server_down_then_up(sshd: SshdHarness) -> None:
    sink = sink_for(sshd)
    sink.send(item("INV-0.xml", b"before"), b"before")  # a kept connection, killed with the server
    sshd.stop()
    with pytest.raises(TransientSinkError, match="cannot connect"):
        sink.send(item("INV-4.xml", b"payload"), b"payload")
    assert sshd.files() == {"INV-0.xml": b"before"}
    sshd.start()
    sink.send(item("INV-4.xml", b"payload", attempts=1), b"payload")
    assert sshd.files() == {"INV-0.xml": b"before", "INV-4.xml": b"payload"}


def test_connection_kept_between_deliveries(sshd: SshdHarness) -> None:
    sink = sink_for(sshd)
    for i in range(3):
        sink.send(item(f"K-{i}.xml", b"k"), b"k")
    assert sink.connections_opened == 1 and sshd.accepted_logins() == 1
    assert sorted(sshd.files()) == ["K-0.xml", "K-1.xml", "K-2.xml"]


def test_one_connection_per_delivery_when_idle_close_is_zero(sshd: SshdHarness) -> None:
    sink = sink_for(sshd, idle_close_seconds=0)
    for i in range(3):
        sink.send(item(f"Z-{i}.xml", b"z"), b"z")
    assert sink.connections_opened == 3
    deadline = time.monotonic() + 10  # each connection closed after its delivery
    while sshd.session_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sshd.session_pids() == []


def test_idle_connection_closed(sshd: SshdHarness) -> None:
    sink = sink_for(sshd, idle_close_seconds=0.2)
    sink.send(item("I-1.xml", b"i"), b"i")
    deadline = time.monotonic() + 10
    while sshd.session_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sshd.session_pids() == []
    sink.send(item("I-2.xml", b"i"), b"i")
    assert sink.connections_opened == 2


def test_dead_kept_connection_replaced_at_once(sshd: SshdHarness) -> None:
    sink = sink_for(sshd)
    sink.send(item("D-1.xml", b"one"), b"one")
    sshd.kill_sessions()  # the server side of the kept connection is gone
    sink.send(item("D-2.xml", b"two"), b"two")
    assert sink.connections_opened == 2
    assert sshd.files() == {"D-1.xml": b"one", "D-2.xml": b"two"}


def test_concurrent_senders_share_the_sink(sshd: SshdHarness) -> None:
    sink = sink_for(sshd)
    payloads = {f"C-{i}.xml": f"payload {i}".encode() * 1000 for i in range(12)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda kv: sink.send(item(kv[0], kv[1]), kv[1]), payloads.items()))
    assert sshd.files() == payloads
    assert sink.connections_opened == 1


def test_connect_timeout_is_transient(sshd: SshdHarness) -> None:
    """The listener frozen (SIGSTOP): TCP connects, no SSH banner comes; the attempt ends in time."""
    sink = sink_for(sshd, connect_timeout_seconds=1)
    assert sshd.process is not None
    os.kill(sshd.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(TransientSinkError, match="cannot connect"):
            sink.send(item("T-1.xml", b"t"), b"t")
        assert time.monotonic() - started < 5
    finally:
        os.kill(sshd.process.pid, signal.SIGCONT)
    sink.send(item("T-1.xml", b"t"), b"t")
    assert sshd.files() == {"T-1.xml": b"t"}


def test_transfer_timeout_is_transient(sshd: SshdHarness) -> None:
    """The server side of a kept connection frozen mid-way: the delivery fails in time, the next one
    gets a new connection."""
    sink = sink_for(sshd, transfer_timeout_seconds=1)
    sink.send(item("S-1.xml", b"s"), b"s")
    frozen = sshd.session_pids()
    assert frozen
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(TransientSinkError, match="timed out"):
            sink.send(item("S-2.xml", b"s2"), b"s2")
        assert time.monotonic() - started < 5
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 10  # the resumed session sees its connection closed and ends
    while set(frozen) & set(sshd.session_pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.send(item("S-2.xml", b"s2"), b"s2")
    assert sink.connections_opened == 2
    assert sshd.files() == {"S-1.xml": b"s", "S-2.xml": b"s2"}


def test_works_from_inside_a_running_event_loop(sshd: SshdHarness) -> None:
    sink = sink_for(sshd)

    async def caller() -> str:
        return sink.send(item("INV-5.xml", b"from a loop"), b"from a loop")

    assert "INV-5.xml" in asyncio.run(caller())
    assert sshd.files() == {"INV-5.xml": b"from a loop"}


def test_password_login_against_the_gateway_sftp_server(make_harness, tmp_path: Path) -> None:
    """Password authentication, against the gateway's own (asyncssh) SFTP server: OpenSSH here only
    accepts keys since the test cannot give a system account a password."""
    harness = make_harness({"acme": SftpPartnerAuth(password_hash=hash_password("s3cret"))})
    host_key = asyncssh.read_private_key(harness.host_key)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{harness.port} {host_key.export_public_key().decode().strip()}\n")
    config = SftpSinkConfig(
        host="127.0.0.1",
        port=harness.port,
        username="acme",
        known_hosts=str(known),
        password=SecretStr("s3cret"),
        remote_dir="/in",
        connect_timeout_seconds=5,
    )
    track(SftpPushSink(config)).send(item("INV-6.xml", b"by password"), b"by password")
    inbox = harness.roots["acme"] / "in"
    assert {p.name: p.read_bytes() for p in inbox.iterdir()} == {"INV-6.xml": b"by password"}
    harness.wait_for(
        lambda: [(p, d) for _, p, d in harness.uploads] == [(inbox / "INV-6.xml", b"by password")]
    )
    bad = config.model_copy(update={"password": SecretStr("wrong")})
    with pytest.raises(PermanentSinkError, match="authentication refused"):
        track(SftpPushSink(bad)).send(item("INV-7.xml", b"x"), b"x")


def test_relative_paths_resolve_against_base_dir(sshd: SshdHarness) -> None:
    base = sshd.base
    config = SftpSinkConfig(
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        known_hosts=sshd.known_hosts.name,
        private_key=sshd.client_key_path.name,
        remote_dir=str(sshd.upload_dir),
    )
    track(build_sftp_sink(config, base)).send(item("INV-8.xml", b"rel"), b"rel")
    assert sshd.files() == {"INV-8.xml": b"rel"}
