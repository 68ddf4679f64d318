"""SftpServer: configuration models, password hashing command, host key, login limiter, lifecycle, logs."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import stat
from pathlib import Path

import asyncssh
import paramiko
import pytest
import structlog
from argon2 import PasswordHasher
from pydantic import ValidationError
from structlog.testing import LogCapture

from gateway.commands import sftp as sftp_command
from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.inbound.sftp_lockout import LoginLimiter
from gateway.inbound.sftp_server import hash_password

from sftp_harness import ManualClock


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[asyncssh.SSHKey, paramiko.PKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "id_ed25519"
    path.write_bytes(key.export_private_key())
    return key, paramiko.Ed25519Key.from_private_key_file(str(path)), key.export_public_key().decode()


def connect(port: int, user: str, pkey: paramiko.PKey) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1", port=port, username=user, pkey=pkey, look_for_keys=False, allow_agent=False, timeout=15
    )
    return client, client.open_sftp()


# ---- configuration ------------------------------------------------------------------------------------


def test_defaults() -> None:
    config = SftpServerConfig()
    assert (config.host, config.port, config.host_key) == ("127.0.0.1", 2222, None)
    assert config.upload_temp_suffixes == (".part", ".filepart", ".tmp")
    assert (config.max_connections, config.login_timeout_seconds) == (200, 20.0)
    assert config.max_unauthenticated_per_address == 30
    assert config.max_unauthenticated is None and config.unauthenticated_limit() == 100
    assert SftpServerConfig(max_connections=3).unauthenticated_limit() == 1
    assert (config.max_login_failures, config.max_login_failures_per_address) == (5, 20)
    assert (config.max_open_handles_per_session, config.max_open_handles_per_partner) == (32, 128)
    with pytest.raises(ValidationError, match="max_unauthenticated"):
        SftpServerConfig(max_connections=10, max_unauthenticated=11)
    assert SftpPartnerAuth().authorized_keys == [] and SftpPartnerAuth().allowed_sources == []
    assert SftpPartnerAuth().max_sessions == 10
    for bad in ({"max_connections": 0}, {"login_timeout_seconds": 0}, {"max_unauthenticated_per_address": 0}):
        with pytest.raises(ValidationError):
            SftpServerConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SftpPartnerAuth(max_sessions=0)


def test_plain_password_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="argon2"):
        SftpPartnerAuth(password_hash="secret")
    with pytest.raises(ValidationError, match="argon2"):
        SftpPartnerAuth(
            password_hash="$2b$12$abcdefghijklmnopqrstuu5Kq0V3p2pQm6V6xqY0b1Cw9gVQZQZ8e"
        )  # bcrypt
    with pytest.raises(ValidationError, match="not a valid argon2"):
        SftpPartnerAuth(password_hash="$argon2id$garbage")
    with pytest.raises(ValidationError):
        SftpPartnerAuth(password="secret")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SftpServerConfig(listen="0.0.0.0")  # type: ignore[call-arg]
    assert SftpPartnerAuth(password_hash=hash_password("pw")).password_hash


def test_key_lines_and_sources_are_checked(client_key) -> None:
    _, _, line = client_key
    assert SftpPartnerAuth(authorized_keys=[line, "# comment", f'from="127.0.0.1" {line}'])
    with pytest.raises(ValidationError, match="authorized_keys"):
        SftpPartnerAuth(authorized_keys=["ssh-ed25519 not-base64"])
    assert SftpPartnerAuth(allowed_sources=["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    with pytest.raises(ValidationError, match="allowed_sources"):
        SftpPartnerAuth(allowed_sources=["example.com"])


def test_hash_password_and_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hashed = hash_password("s3cret")
    assert hashed.startswith("$argon2id$") and PasswordHasher().verify(hashed, "s3cret")
    with pytest.raises(ValueError):
        hash_password("")

    parser = argparse.ArgumentParser()
    sftp_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sftp", "hash-password"])
    monkeypatch.setattr("sys.stdin", io.StringIO("partner pass phrase\n"))
    assert args.func(args) == 0
    printed = capsys.readouterr().out.strip()
    assert PasswordHasher().verify(printed, "partner pass phrase")
    assert SftpPartnerAuth(password_hash=printed)

    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert sftp_command.run(args) == 1


def test_login_limiter_locks_and_forgets() -> None:
    clock = ManualClock()
    limiter = LoginLimiter(max_failures=3, max_address_failures=100, lockout_seconds=60, clock=clock)
    assert not limiter.failure("192.0.2.1", "acme") and not limiter.failure("192.0.2.1", "acme")
    limiter.success("192.0.2.1", "acme")  # a good login clears that user's count
    assert not limiter.failure("192.0.2.1", "acme") and not limiter.failure("192.0.2.1", "acme")
    [lockout] = limiter.failure("192.0.2.1", "acme")
    assert (lockout.address, lockout.username, lockout.until) == ("192.0.2.1", "acme", clock.now() + 60)
    assert limiter.locked("192.0.2.1", "acme", password=True)
    assert limiter.locked("192.0.2.1", "acme", password=False)  # keys too: that account, from there
    assert not limiter.locked("192.0.2.2", "acme", password=True)
    assert not limiter.locked("192.0.2.1", "beta", password=True)  # another user from the same address
    clock.advance(61)
    assert not limiter.locked("192.0.2.1", "acme", password=True)
    assert not limiter.failure("192.0.2.3", "acme")
    clock.advance(61)  # failures older than the window are forgotten
    assert not limiter.failure("192.0.2.3", "acme") and not limiter.failure("192.0.2.3", "acme")


def test_a_login_does_not_clear_other_users_failures() -> None:
    """Issue 16 item 8: a partner with working credentials cannot reset the count between guesses."""
    clock = ManualClock()
    limiter = LoginLimiter(max_failures=3, max_address_failures=5, lockout_seconds=60, clock=clock)
    for _ in range(2):
        assert not limiter.failure("192.0.2.1", "victim")
        limiter.success("192.0.2.1", "attacker")
    assert limiter.failure("192.0.2.1", "victim")  # third failure: locked despite the logins between
    assert limiter.locked("192.0.2.1", "victim", password=True)


def test_address_lockout_spares_key_logins() -> None:
    """Password guesses over many names lock the address's *password* logins; key users behind it stay in."""
    clock = ManualClock()
    limiter = LoginLimiter(max_failures=3, max_address_failures=4, lockout_seconds=60, clock=clock)
    started = [limiter.failure("198.51.100.7", f"user{n}") for n in range(4)]
    assert started[:3] == [[], [], []]
    [address_lockout] = started[3]
    assert (address_lockout.username, address_lockout.failures) == ("", 4)
    assert limiter.locked("198.51.100.7", "acme", password=True)
    assert not limiter.locked("198.51.100.7", "acme", password=False)
    assert not limiter.locked("198.51.100.8", "acme", password=True)
    restored = LoginLimiter(max_failures=3, max_address_failures=4, lockout_seconds=60, clock=clock)
    assert restored.restore([address_lockout]) == 1
    assert restored.locked("198.51.100.7", "beta", password=True)
    clock.advance(60)
    assert restored.restore([address_lockout]) == 0  # expired ones are not restored


# ---- lifecycle ----------------------------------------------------------------------------------------


def host_key_of(port: int) -> str:
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=10)
        return transport.get_remote_server_key().get_base64()
    finally:
        transport.close()


def test_host_key_generated_once_and_kept(make_harness, tmp_path: Path, client_key) -> None:
    _, _, line = client_key
    auths = {"acme": SftpPartnerAuth(authorized_keys=[line])}
    first = make_harness(auths, base=tmp_path / "gw")
    assert stat.S_IMODE(first.host_key.stat().st_mode) == 0o600
    assert asyncssh.read_private_key(first.host_key).algorithm == b"ssh-ed25519"
    offered = host_key_of(first.port)
    first.stop()
    second = make_harness(auths, base=tmp_path / "gw")
    assert host_key_of(second.port) == offered
    assert (second.roots["acme"] / "in").is_dir() and (second.roots["acme"] / "out").is_dir()


def test_stale_temp_files_are_removed_at_start(make_harness, tmp_path: Path, client_key) -> None:
    inbox = tmp_path / "gw" / "partners" / "acme" / "in"
    inbox.mkdir(parents=True)
    (inbox / ".sftp-0123456789abcdef.upload").write_bytes(b"half a file from before a crash")
    (inbox / "kept.xml").write_bytes(b"complete")
    make_harness({"acme": SftpPartnerAuth(authorized_keys=[client_key[2]])}, base=tmp_path / "gw")
    assert sorted(p.name for p in inbox.iterdir()) == ["kept.xml"]


def test_stop_aborts_uploads_in_progress(make_harness, client_key) -> None:
    _, pkey, line = client_key
    harness = make_harness({"acme": SftpPartnerAuth(authorized_keys=[line])})
    client, sftp = connect(harness.port, "acme", pkey)
    fh = sftp.open("/in/slow.xml", "wb")
    fh.write(b"x" * 50_000)
    fh.flush()
    assert harness.metric("gateway_sftp_sessions") == 1
    harness.stop()
    inbox = harness.roots["acme"] / "in"
    assert list(inbox.iterdir()) == []
    assert harness.uploads == []
    assert harness.metric("gateway_sftp_uploads_total", partner="acme", result="aborted") == 1
    assert harness.metric("gateway_sftp_sessions") == 0
    client.close()
    with pytest.raises(OSError):
        connect(harness.port, "acme", pkey)


def test_close_status_reports_a_collision(make_harness, client_key) -> None:
    """A client that checks the close status (asyncssh's client does; paramiko ignores it) sees the refusal."""
    key, _, line = client_key
    harness = make_harness({"acme": SftpPartnerAuth(authorized_keys=[line])})

    async def race() -> None:
        async with (
            asyncssh.connect(
                "127.0.0.1", harness.port, username="acme", client_keys=[key], known_hosts=None
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            first = await sftp.open("/in/race.xml", "wb")
            second = await sftp.open("/in/race.xml", "wb")
            await first.write(b"one")
            await second.write(b"two")
            await first.close()
            with pytest.raises(asyncssh.SFTPFailure, match="not been taken"):
                await second.close()

    asyncio.run(race())
    assert (harness.roots["acme"] / "in" / "race.xml").read_bytes() == b"one"
    assert [p.name for _, p, _ in harness.uploads] == ["race.xml"]


def test_log_lines_and_metrics(make_harness, client_key) -> None:
    _, pkey, line = client_key
    capture = LogCapture()
    logger = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()), processors=[capture])
    harness = make_harness({"acme": SftpPartnerAuth(authorized_keys=[line])}, logger=logger)
    (harness.roots["acme"] / "out" / "ack.xml").write_bytes(b"A" * 300)
    client, sftp = connect(harness.port, "acme", pkey)
    try:
        sftp.putfo(io.BytesIO(os.urandom(4096)), "/in/flow.xml")
        with sftp.open("/out/ack.xml") as fh:
            fh.read()
    finally:
        client.close()
    harness.wait_for(lambda: any(e["event"] == "sftp.disconnect" for e in capture.entries))
    events = {entry["event"]: entry for entry in capture.entries}
    assert {"sftp.listening", "sftp.connect", "sftp.login", "sftp.upload", "sftp.download"} <= set(events)
    upload = events["sftp.upload"]
    assert (upload["partner"], upload["file"], upload["bytes"], upload["result"]) == (
        "acme",
        "flow.xml",
        4096,
        "ok",
    )
    assert upload["duration_s"] >= 0
    download = events["sftp.download"]
    assert (download["partner"], download["bytes"], download["complete"]) == ("acme", 300, True)
    assert harness.metric("gateway_sftp_logins_total", result="ok") == 1
    assert harness.metric("gateway_sftp_received_bytes_total", partner="acme") == 4096
    assert harness.metric("gateway_sftp_sent_bytes_total", partner="acme") == 300
    assert harness.metric("gateway_sftp_transfer_duration_seconds_count") == 1
