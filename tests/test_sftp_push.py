"""SFTP push sink against a real OpenSSH sshd on a loopback port (and the gateway's own SFTP server for
password login): right bytes and name, no `.part` left, wrong host key refused, server down then up,
same name re-sent overwrites."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
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
    return build_sftp_sink(SftpSinkConfig.model_validate(fields))


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
    sshd.stop()
    with pytest.raises(TransientSinkError, match="cannot connect"):
        sink.send(item("INV-4.xml", b"payload"), b"payload")
    assert sshd.files() == {}
    sshd.start()
    sink.send(item("INV-4.xml", b"payload", attempts=1), b"payload")
    assert sshd.files() == {"INV-4.xml": b"payload"}


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
    SftpPushSink(config).send(item("INV-6.xml", b"by password"), b"by password")
    inbox = harness.roots["acme"] / "in"
    assert {p.name: p.read_bytes() for p in inbox.iterdir()} == {"INV-6.xml": b"by password"}
    harness.wait_for(
        lambda: [(p, d) for _, p, d in harness.uploads] == [(inbox / "INV-6.xml", b"by password")]
    )
    bad = config.model_copy(update={"password": SecretStr("wrong")})
    with pytest.raises(PermanentSinkError, match="authentication refused"):
        SftpPushSink(bad).send(item("INV-7.xml", b"x"), b"x")


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
    build_sftp_sink(config, base).send(item("INV-8.xml", b"rel"), b"rel")
    assert sshd.files() == {"INV-8.xml": b"rel"}
