"""SFTP hardening (issue 16): failed writes, lockouts, handle caps, pre-auth floods, timing, host key."""

from __future__ import annotations

import asyncio
import errno
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest

from gateway.inbound.sftp_auth import verify_password
from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.inbound.sftp_hostkey import HostKeyError
from gateway.inbound.sftp_server import SftpPartner, SftpServer, hash_password
from gateway.store.db import Store
from gateway.store.lockouts import StoredLockouts

from sftp_harness import Account, Harness, ManualClock, make_account, raw_connection

PASSWORD = "correct horse battery staple"


@pytest.fixture
def accounts(tmp_path: Path) -> dict[str, Account]:
    keys = tmp_path / "keys"
    keys.mkdir()
    return {name: make_account(keys, name) for name in ("acme", "beta")}


def connect(
    harness: Harness,
    user: str,
    pkey: paramiko.PKey | None = None,
    password: str | None = None,
    source: str = "127.0.0.1",
) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1",
        port=harness.port,
        sock=raw_connection(harness, source),
        username=user,
        pkey=pkey,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
        banner_timeout=15,
        auth_timeout=15,
    )
    return client, client.open_sftp()


def refused(harness: Harness, user: str, **kwargs: object) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(harness, user, **kwargs)  # type: ignore[arg-type]


def works(harness: Harness, user: str, **kwargs: object) -> None:
    client, sftp = connect(harness, user, **kwargs)  # type: ignore[arg-type]
    try:
        assert sftp.listdir("/") == ["in", "out"]
    finally:
        client.close()


def asyncssh_session(harness: Harness, account: Account):  # type: ignore[no-untyped-def]
    key = asyncssh.read_private_key(account.key_path)
    return asyncssh.connect(
        "127.0.0.1", harness.port, username=account.key_path.name.split("_")[0], client_keys=[key],
        known_hosts=None,
    )  # fmt: skip


# ---- item 4: a failed write poisons the upload ------------------------------------------------------


async def _upload_expecting_failure(harness: Harness, account: Account, name: str, data: bytes) -> str:
    """Write `data` in chunks; returns the error of the failing write; the close must fail too."""
    write_error = ""
    async with asyncssh_session(harness, account) as conn, conn.start_sftp_client() as sftp:
        handle = await sftp.open(f"/in/{name}", "wb")
        try:
            for offset in range(0, len(data), 16384):
                await handle.write(data[offset : offset + 16384], offset)
        except asyncssh.SFTPError as exc:
            write_error = str(exc)
        with pytest.raises(asyncssh.SFTPFailure):
            await handle.close()  # the client's CLOSE does not publish the truncated file
        assert name not in await sftp.listdir("/in")
    return write_error


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only): uploads bigger than that fail with ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_during_upload_is_never_taken(make_harness, accounts, small_filesystem: Path) -> None:
    harness = make_harness(
        {"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])}, base=small_filesystem
    )
    error = asyncio.run(_upload_expecting_failure(harness, accounts["acme"], "big.xml", os.urandom(1 << 20)))
    assert "could not store the file" in error and "space" in error.lower()
    inbox = harness.roots["acme"] / "in"
    assert list(inbox.iterdir()) == []  # nothing published, the temporary file is gone (space freed)
    assert harness.uploads == []
    assert harness.metric("gateway_sftp_uploads_total", partner="acme", result="write_failed") == 1
    client, sftp = connect(harness, "acme", accounts["acme"].pkey)  # once there is room, uploads work
    try:
        with sftp.open("/in/small.xml", "wb") as fh:
            fh.write(b"<Invoice/>")
    finally:
        client.close()
    harness.wait_for(lambda: [p.name for _, p, _ in harness.uploads] == ["small.xml"])


def test_io_error_during_upload_is_never_taken(make_harness, accounts) -> None:
    writes: list[int] = []

    def failing_disk(fd: int, data: memoryview, offset: int) -> int:
        writes.append(offset)
        if len(writes) >= 3:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return os.pwrite(fd, data, offset)

    harness = make_harness(
        {"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])},
        server_options={"write_at": failing_disk},
    )
    error = asyncio.run(_upload_expecting_failure(harness, accounts["acme"], "eio.xml", os.urandom(100_000)))
    assert "Input/output error" in error
    assert list((harness.roots["acme"] / "in").iterdir()) == []
    assert harness.uploads == []
    assert harness.metric("gateway_sftp_uploads_total", partner="acme", result="write_failed") == 1


# ---- item 8: lockouts per (address, user) and per address, kept in the store -------------------------


def _lockout_auths(accounts: dict[str, Account]) -> dict[str, SftpPartnerAuth]:
    return {
        "acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line]),
        "beta": SftpPartnerAuth(
            password_hash=hash_password(PASSWORD), authorized_keys=[accounts["beta"].public_line]
        ),
    }


def test_a_partner_cannot_reset_the_count_between_guesses(make_harness, accounts) -> None:
    harness = make_harness(_lockout_auths(accounts), max_login_failures=2)
    refused(harness, "beta", password="guess 1")
    works(harness, "acme", pkey=accounts["acme"].pkey)  # the attacker's own, working login
    refused(harness, "beta", password="guess 2")
    refused(harness, "beta", password=PASSWORD)  # beta is locked out from this address
    assert harness.metric("gateway_sftp_logins_total", result="locked_out") == 1
    works(harness, "acme", pkey=accounts["acme"].pkey)  # acme is not: its own count is clean
    works(harness, "beta", password=PASSWORD, source="127.0.0.2")  # nor beta from elsewhere


def test_password_spraying_locks_passwords_not_keys_behind_a_nat(make_harness, accounts) -> None:
    harness = make_harness(_lockout_auths(accounts), max_login_failures=5, max_login_failures_per_address=3)
    for user in ("admin", "root", "test"):
        refused(harness, user, password="123456", source="127.0.0.3")
    refused(harness, "beta", password=PASSWORD, source="127.0.0.3")  # password logins from there: locked
    works(harness, "acme", pkey=accounts["acme"].pkey, source="127.0.0.3")  # a key user behind the NAT
    works(harness, "beta", pkey=accounts["beta"].pkey, source="127.0.0.3")
    works(harness, "beta", password=PASSWORD)  # another address


def test_lockouts_survive_a_restart(make_harness, accounts, tmp_path: Path, store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        options = {"lockouts": StoredLockouts(store)}
        first = make_harness(
            _lockout_auths(accounts), base=tmp_path / "gw", max_login_failures=2, server_options=options
        )
        refused(first, "beta", password="guess 1")
        refused(first, "beta", password="guess 2")
        first.stop()  # waits for the lockout to be written

        second = make_harness(
            _lockout_auths(accounts), base=tmp_path / "gw", max_login_failures=2, server_options=options
        )
        refused(second, "beta", password=PASSWORD)
        refused(second, "beta", pkey=accounts["beta"].pkey)
        assert second.metric("gateway_sftp_logins_total", result="locked_out") == 2
        works(second, "acme", pkey=accounts["acme"].pkey)
        works(second, "beta", password=PASSWORD, source="127.0.0.2")
    finally:
        store.close()


def test_stored_lockouts_expire(store_url: str) -> None:
    from gateway.inbound.sftp_lockout import Lockout

    store = Store(store_url)
    store.migrate()
    try:
        table = StoredLockouts(store)
        table.save(Lockout("192.0.2.1", "beta", 2_000.0, 5))
        table.save(Lockout("192.0.2.1", "", 3_000.0, 20))
        table.save(Lockout("192.0.2.1", "beta", 2_500.0, 6))  # extended: one row per (address, user)
        assert sorted(table.load(1_000.0), key=lambda lockout: lockout.username) == [
            Lockout("192.0.2.1", "", 3_000.0, 20),
            Lockout("192.0.2.1", "beta", 2_500.0, 6),
        ]
        assert StoredLockouts(store, scope="other").load(1_000.0) == []
        assert table.load(2_600.0) == [Lockout("192.0.2.1", "", 3_000.0, 20)]  # expired ones deleted
    finally:
        store.close()


def test_lockout_ends_when_the_clock_says_so(make_harness, accounts) -> None:
    clock = ManualClock()
    harness = make_harness(
        _lockout_auths(accounts), max_login_failures=1, lockout_seconds=600, server_options={"clock": clock}
    )
    refused(harness, "beta", password="guess")
    refused(harness, "beta", password=PASSWORD)
    clock.advance(599)
    refused(harness, "beta", password=PASSWORD)
    clock.advance(2)
    works(harness, "beta", password=PASSWORD)


# ---- item 9: open handles per session and per partner ------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_open_handles_are_capped(make_harness, accounts) -> None:
    harness = make_harness(
        {"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])},
        max_open_handles_per_session=3,
        max_open_handles_per_partner=5,
    )
    (harness.roots["acme"] / "out" / "ack.xml").write_bytes(b"<Ack/>")

    async def scenario() -> None:
        async with (
            asyncssh_session(harness, accounts["acme"]) as one,
            one.start_sftp_client() as first,
            asyncssh_session(harness, accounts["acme"]) as two,
            two.start_sftp_client() as second,
        ):
            mine = [await first.open(f"/in/f{i}.xml", "wb") for i in range(2)]
            mine.append(await first.open("/out/ack.xml", "rb"))  # downloads count too
            with pytest.raises(asyncssh.SFTPFailure, match="too many open files in this session"):
                await first.open("/in/f3.xml", "wb")
            await mine[0].write(b"<Invoice/>")
            await mine[0].close()
            mine[0] = await first.open("/in/f3.xml", "wb")  # a closed handle frees its place
            theirs = [await second.open(f"/in/g{i}.xml", "wb") for i in range(2)]
            with pytest.raises(asyncssh.SFTPFailure, match="too many open files for this partner"):
                await second.open("/in/g2.xml", "wb")
            for handle in mine + theirs:
                await handle.close()
            extra = await second.open("/in/g2.xml", "wb")
            await extra.close()

    asyncio.run(scenario())
    assert sorted(p.name for _, p, _ in harness.uploads) == [
        "f0.xml", "f1.xml", "f3.xml", "g0.xml", "g1.xml", "g2.xml",
    ]  # fmt: skip


def test_one_session_cannot_exhaust_file_descriptors(make_harness, accounts) -> None:
    harness = make_harness({"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])})
    limit = harness.config.max_open_handles_per_session
    before = _open_fds()

    async def flood() -> tuple[int, int]:
        opened, peak = 0, 0
        async with asyncssh_session(harness, accounts["acme"]) as conn, conn.start_sftp_client() as sftp:
            for n in range(300):
                try:
                    await sftp.open(f"/in/flood{n}.xml", "wb")
                    opened += 1
                except asyncssh.SFTPFailure:
                    pass
            peak = _open_fds()
        return opened, peak

    opened, peak = asyncio.run(flood())
    assert opened == limit
    assert peak - before <= limit + 10  # the handles plus the session's own sockets
    harness.wait_for(lambda: _open_fds() <= before + 2)
    assert harness.uploads == []  # the session ended with them open: none published


# ---- item 10: idle pre-auth sockets cannot keep partners out ----------------------------------------


def test_idle_preauth_sockets_from_seven_addresses_do_not_block_logins(make_harness, accounts) -> None:
    harness = make_harness(
        _lockout_auths(accounts),
        max_connections=20,
        max_unauthenticated=10,
        max_unauthenticated_per_address=3,
    )
    server = harness.server
    idle = []
    try:
        for n in range(2, 9):  # 7 addresses x 3 idle sockets = 21 > max_connections
            for _ in range(3):
                idle.append(raw_connection(harness, source=f"127.0.0.{n}"))
        harness.wait_for(lambda: server.connection_count == 10 and server.unauthenticated_total == 10)
        clients = [connect(harness, "acme", accounts["acme"].pkey) for _ in range(3)]
        clients.append(connect(harness, "beta", password=PASSWORD))
        for _client, sftp in clients:
            assert sftp.listdir("/") == ["in", "out"]
        assert server.unauthenticated_total <= 10
        dropped = harness.metric("gateway_sftp_logins_total", result="evicted_unauthenticated")
        dropped += harness.metric("gateway_sftp_logins_total", result="unauthenticated_full")
        assert dropped >= 11  # 21 idle sockets, at most 10 kept
        for client, _ in clients:
            client.close()
    finally:
        for sock in idle:
            sock.close()
    harness.wait_for(lambda: server.connection_count == 0)


def test_eviction_spares_the_lighter_address() -> None:
    from gateway.inbound.sftp_limits import ConnectionLimits

    clock = ManualClock()
    config = SftpServerConfig(max_connections=10, max_unauthenticated=4, max_unauthenticated_per_address=3)
    limits = ConnectionLimits(config, clock)
    for n, address in enumerate(["a", "a", "a", "b"]):
        assert limits.admit(f"{address}{n}", address).accepted
        clock.advance(1)
    newcomer = limits.admit("c0", "c")
    assert newcomer.accepted and newcomer.evicted == [("a0", "a")]  # oldest of the heaviest address
    assert limits.admit("a9", "a").refusal == "unauthenticated_full"  # "a" cannot evict the others
    limits.authenticated("c0", "c")
    assert limits.unauthenticated_total == 3 and limits.connection_count == 4
    limits.closed("a0", "a")  # the evicted one's own close later: harmless
    assert limits.unauthenticated_count("a") == 2


# ---- item 11: refusals take as long as a wrong password ----------------------------------------------


@pytest.mark.slow
def test_refused_attempts_run_the_password_check_too(make_harness, accounts) -> None:
    verified: list[str] = []

    def verifier(stored: str, password: str) -> bool:
        verified.append(password)
        return verify_password(stored, password)

    hashed = hash_password(PASSWORD)
    harness = make_harness(
        {
            "fenced": SftpPartnerAuth(password_hash=hashed, allowed_sources=["10.0.0.0/8"]),
            "beta": SftpPartnerAuth(password_hash=hashed),
        },
        max_login_failures=3,
        server_options={"password_verifier": verifier},
    )

    def attempt(user: str, password: str) -> float:
        started = time.perf_counter()
        refused(harness, user, password=password)
        return time.perf_counter() - started

    wrong = [attempt("beta", f"wrong {n}") for n in range(2)]
    assert len(verified) == 2
    outside = [attempt("fenced", PASSWORD) for _ in range(3)]  # known partner, address not allowed
    assert len(verified) == 5
    unknown = [attempt("nobody", PASSWORD) for _ in range(1)]
    attempt("beta", "wrong 3")  # beta is now locked out from here
    locked = [attempt("beta", PASSWORD) for _ in range(3)]
    assert len(verified) == 10 and verified[-3:] == [PASSWORD] * 3
    assert harness.metric("gateway_sftp_logins_total", result="source_denied") == 3
    assert harness.metric("gateway_sftp_logins_total", result="locked_out") == 3
    reference = statistics.median(wrong + unknown)
    for durations in (outside, locked):  # loose: the point is that the argon2 check is not skipped
        assert statistics.median(durations) > 0.6 * reference, (durations, reference)


# ---- item 13: a host key others can read is refused -------------------------------------------------


def test_host_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_path = tmp_path / "ssh_host_ed25519_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key_path))
    key_path.chmod(0o644)
    server = SftpServer(SftpServerConfig(port=0), {}, key_path, lambda partner, path: None)
    with pytest.raises(HostKeyError) as refused_start:
        asyncio.run(server.start())
    message = str(refused_start.value)
    assert "\n" not in message and "0644" in message and f"chmod 600 {key_path}" in message
    key_path.chmod(0o600)
    asyncio.run(_start_and_stop(server))


async def _start_and_stop(server: SftpServer) -> None:
    await server.start()
    assert server.port > 0
    await server.stop()


# ---- the client-close adapter ------------------------------------------------------------------------


def test_close_detection_fails_loudly_on_an_unknown_asyncssh(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncssh.sftp

    from gateway.inbound.sftp_close import ClientCloseDetector, CloseDetectionUnavailable
    from gateway.inbound.sftp_server import SftpStartError

    class Renamed:
        async def _process_close_request(self) -> None:
            pass

    with pytest.raises(CloseDetectionUnavailable, match="_process_close"):
        ClientCloseDetector(Renamed)

    class NoLongerCalls:
        async def _process_close(self) -> None:
            pass

    with pytest.raises(CloseDetectionUnavailable, match="no longer calls"):
        ClientCloseDetector(NoLongerCalls)

    monkeypatch.delattr(asyncssh.sftp.SFTPServerHandler, "_process_close")
    server = SftpServer(SftpServerConfig(port=0), {}, Path("/nonexistent/key"), lambda partner, path: None)
    with pytest.raises(SftpStartError, match="install asyncssh"):
        asyncio.run(server.start())


def test_close_detection_names_its_caller() -> None:
    from gateway.inbound.sftp_close import ClientCloseDetector

    class Handler:
        async def _process_close(self, server: Callable[[], bool]) -> bool:
            return server.close()  # type: ignore[attr-defined,no-any-return]

    class Server:
        def __init__(self, detector: ClientCloseDetector) -> None:
            self.detector = detector

        def close(self) -> bool:
            return self.detector.is_client_close()

    detector = ClientCloseDetector(Handler)
    server = Server(detector)
    assert asyncio.run(Handler()._process_close(server)) is True  # type: ignore[arg-type]
    assert server.close() is False  # any other caller: a clean-up, never a publish


def test_partner_roots_are_created(tmp_path: Path) -> None:
    partner = SftpPartner("acme", tmp_path / "acme", SftpPartnerAuth())
    server = SftpServer(SftpServerConfig(port=0), {"acme": partner}, tmp_path / "key", lambda p, f: None)
    asyncio.run(_start_and_stop(server))
    assert (tmp_path / "acme" / "in").is_dir() and (tmp_path / "acme" / "out").is_dir()
    assert server.host_key_fingerprint is not None and server.host_key_fingerprint.startswith("SHA256:")
