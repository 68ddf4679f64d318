"""The embedded SFTP server driven by real clients: OpenSSH's `sftp` in batch mode and paramiko."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
import structlog
from structlog.testing import LogCapture

from gateway.inbound.sftp_config import SftpPartnerAuth
from gateway.inbound.sftp_server import hash_password

from sftp_harness import (
    Account,
    Harness,
    ManualClock,
    make_account,
    raw_connection,
    read_banner,
    read_until_closed,
)

SFTP_CLIENT = shutil.which("sftp")
PASSWORD = "correct horse battery staple"


def connect(
    harness: Harness,
    user: str,
    pkey: paramiko.PKey | None = None,
    password: str | None = None,
    source: str | None = None,  # a local address to connect from (any of 127/8 works on Linux)
):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1",
        port=harness.port,
        sock=raw_connection(harness, source) if source else None,
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


# ---- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def accounts(tmp_path: Path) -> dict[str, Account]:
    keys = tmp_path / "keys"
    keys.mkdir()
    return {name: make_account(keys, name) for name in ("acme", "beta", "stranger")}


@pytest.fixture
def gateway(make_harness: Callable[..., Harness], accounts: dict[str, Account]) -> Harness:
    return make_harness(
        {
            "acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line]),
            "beta": SftpPartnerAuth(
                authorized_keys=[accounts["beta"].public_line], password_hash=hash_password(PASSWORD)
            ),
        }
    )


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".sftp-")]


# ---- OpenSSH sftp client in batch mode ----------------------------------------------------------------


def openssh(harness: Harness, account: Account, user: str, commands: list[str], cwd: Path):
    if SFTP_CLIENT is None:
        pytest.skip("OpenSSH sftp client not installed")
    batch = cwd / "batch.txt"
    batch.write_text("\n".join(commands) + "\n")
    return subprocess.run(
        [
            SFTP_CLIENT,
            "-F", "/dev/null",
            "-b", str(batch),
            "-i", str(account.key_path),
            "-P", str(harness.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR",
            f"{user}@127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "client"
    path.mkdir()
    return path


def test_openssh_put_is_announced_on_close(gateway: Harness, accounts, workdir: Path) -> None:
    payload = os.urandom(300_000)
    (workdir / "invoice.xml").write_bytes(payload)
    result = openssh(
        gateway, accounts["acme"], "acme", ["ls /", "put invoice.xml /in/invoice.xml", "ls -l /in"], workdir
    )
    assert result.returncode == 0, result.stderr
    assert "in" in result.stdout and "out" in result.stdout
    inbox = gateway.roots["acme"] / "in"
    assert gateway.uploads == [("acme", inbox / "invoice.xml", payload)]
    assert visible(inbox) == ["invoice.xml"]
    assert gateway.metric("gateway_sftp_uploads_total", partner="acme", result="ok") == 1
    assert gateway.metric("gateway_sftp_received_bytes_total", partner="acme") == len(payload)


def test_openssh_downloads_an_ack_and_deletes_it(gateway: Harness, accounts, workdir: Path) -> None:
    ack = b"<ack>ok</ack>" * 1000
    (gateway.roots["acme"] / "out" / "ack-1.xml").write_bytes(ack)
    (gateway.roots["acme"] / "out" / "ack-2.xml.part").write_bytes(b"in progress")  # hidden
    result = openssh(
        gateway,
        accounts["acme"],
        "acme",
        ["ls /out", "get /out/ack-1.xml got.xml", "rm /out/ack-1.xml"],
        workdir,
    )
    assert result.returncode == 0, result.stderr
    assert "ack-2" not in result.stdout
    assert (workdir / "got.xml").read_bytes() == ack
    assert visible(gateway.roots["acme"] / "out") == ["ack-2.xml.part"]
    assert gateway.metric("gateway_sftp_sent_bytes_total", partner="acme") == len(ack)


def test_openssh_resume_is_refused(gateway: Harness, accounts, workdir: Path) -> None:
    (workdir / "big.xml").write_bytes(b"a" * 50_000)
    inbox = gateway.roots["acme"] / "in"
    (inbox / "big.xml").write_bytes(b"a" * 10_000)  # an earlier file not taken yet
    (inbox / "other.xml.part").write_bytes(b"a" * 10_000)  # a partial temp name
    (workdir / "other.xml.part").write_bytes(b"a" * 50_000)
    for command in ("reput big.xml /in/big.xml", "reput other.xml.part /in/other.xml.part"):
        result = openssh(gateway, accounts["acme"], "acme", [command], workdir)
        assert result.returncode != 0, command
    assert (inbox / "big.xml").stat().st_size == 10_000
    assert (inbox / "other.xml.part").stat().st_size == 10_000
    assert gateway.uploads == []
    assert temps(inbox) == []


def test_openssh_wrong_key_is_refused(gateway: Harness, accounts, workdir: Path) -> None:
    result = openssh(gateway, accounts["stranger"], "acme", ["ls /"], workdir)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    gateway.wait_for(lambda: gateway.metric("gateway_sftp_logins_total", result="bad_key") == 1)
    assert gateway.metric("gateway_sftp_logins_total", result="ok") == 0


def test_openssh_cannot_reach_another_partner(gateway: Harness, accounts, workdir: Path) -> None:
    (gateway.roots["beta"] / "out" / "secret.xml").write_text("beta's ack")
    (workdir / "x.xml").write_text("intrusion")
    attempts = [
        "get /../beta/out/secret.xml s1",
        "get ../beta/out/secret.xml s2",
        f"get {gateway.roots['beta']}/out/secret.xml s3",
        "put x.xml /../beta/in/x.xml",
        "put x.xml ../../beta/in/x.xml",
        "put x.xml /out/x.xml",
        "mkdir /in/sub",
        "symlink /out /in/link",
        "ln /out/a /in/b",
        "rename /in/none /../beta/in/x.xml",
    ]
    for command in attempts:
        result = openssh(gateway, accounts["acme"], "acme", [command], workdir)
        assert result.returncode != 0, command
    assert not list(workdir.glob("s*"))
    assert visible(gateway.roots["beta"] / "in") == []
    assert visible(gateway.roots["acme"] / "in") == []
    assert visible(gateway.roots["acme"] / "out") == []
    assert gateway.uploads == []


def test_openssh_winscp_style_rename_is_announced_once(gateway: Harness, accounts, workdir: Path) -> None:
    payload = os.urandom(70_000)
    (workdir / "flow.xml").write_bytes(payload)
    inbox = gateway.roots["acme"] / "in"
    result = openssh(gateway, accounts["acme"], "acme", ["put flow.xml /in/flow.xml.filepart"], workdir)
    assert result.returncode == 0, result.stderr
    assert visible(inbox) == ["flow.xml.filepart"] and gateway.uploads == []
    result = openssh(
        gateway, accounts["acme"], "acme", ["rename /in/flow.xml.filepart /in/flow.xml"], workdir
    )
    assert result.returncode == 0, result.stderr
    assert gateway.uploads == [("acme", inbox / "flow.xml", payload)]
    assert visible(inbox) == ["flow.xml"]


# ---- paramiko -----------------------------------------------------------------------------------------


def test_paramiko_upload_download_delete(gateway: Harness, accounts) -> None:
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        sftp.putfo(io.BytesIO(b"<Invoice/>"), "in/one.xml")  # relative to / ; paramiko stats after put
        (gateway.roots["acme"] / "out" / "one.ack").write_bytes(b"ACK")
        assert sftp.listdir("/out") == ["one.ack"]
        with sftp.open("/out/one.ack") as fh:
            assert fh.read() == b"ACK"
        sftp.remove("/out/one.ack")
        assert sftp.listdir("/out") == []
        with pytest.raises(PermissionError):
            sftp.open("/in/one.xml").read()  # in/ is write-only
        with pytest.raises(PermissionError):
            sftp.remove("/in/one.xml")  # published files belong to the gateway
    finally:
        client.close()
    assert gateway.uploads == [("acme", gateway.roots["acme"] / "in" / "one.xml", b"<Invoice/>")]


def test_stat_after_upload_works_when_the_file_was_already_taken(gateway: Harness, accounts) -> None:
    gateway.on_upload_hook = lambda partner, path: path.unlink()  # a very fast watcher
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        attrs = sftp.putfo(io.BytesIO(b"x" * 1234), "/in/fast.xml")  # confirm=True stats the file
        assert attrs.st_size == 1234
        sftp.putfo(io.BytesIO(b"y" * 10), "/in/fast.xml")  # taken, so the name is free again
    finally:
        client.close()
    assert [len(content) for _, _, content in gateway.uploads] == [1234, 10]


def test_paramiko_resume_and_append_are_refused(gateway: Harness, accounts) -> None:
    inbox = gateway.roots["acme"] / "in"
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        with pytest.raises(PermissionError):
            sftp.open("/in/new.xml", "a")
        sftp.putfo(io.BytesIO(b"part one"), "/in/f.xml.part")
        with pytest.raises(PermissionError):
            sftp.open("/in/f.xml.part", "a")
        with pytest.raises(PermissionError):
            sftp.open("/in/f.xml.part", "r+")
        fh = sftp.open("/in/hole.xml", "w")
        fh.seek(5000)
        with pytest.raises(PermissionError):
            fh.write(b"tail")  # a write past the end is a resume attempt
            fh.flush()
        fh.close()  # paramiko ignores the close status; the upload is already dropped
    finally:
        client.close()
    assert visible(inbox) == ["f.xml.part"]
    assert (inbox / "f.xml.part").read_bytes() == b"part one"
    assert gateway.uploads == []


def test_wrong_key_wrong_password_unknown_user(gateway: Harness, accounts) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(gateway, "acme", accounts["beta"].pkey)
    with pytest.raises(paramiko.AuthenticationException):
        connect(gateway, "beta", password="not the password")
    with pytest.raises(paramiko.AuthenticationException):
        connect(gateway, "acme", password=PASSWORD)  # acme has no password
    with pytest.raises(paramiko.AuthenticationException):
        connect(gateway, "nobody", password=PASSWORD)
    client, sftp = connect(gateway, "beta", password=PASSWORD)
    assert sftp.listdir("/") == ["in", "out"]
    client.close()
    gateway.wait_for(lambda: gateway.metric("gateway_sftp_logins_total", result="bad_key") == 1)
    assert gateway.metric("gateway_sftp_logins_total", result="bad_password") == 2
    assert gateway.metric("gateway_sftp_logins_total", result="unknown_user") == 1
    assert gateway.metric("gateway_sftp_logins_total", result="ok") == 1


def test_lockout_after_repeated_failures(make_harness, accounts) -> None:
    clock = ManualClock()
    harness = make_harness(
        {
            "beta": SftpPartnerAuth(
                password_hash=hash_password(PASSWORD), authorized_keys=[accounts["beta"].public_line]
            )
        },
        max_login_failures=3,
        lockout_seconds=300.0,
        server_options={"clock": clock},
    )
    for _ in range(3):
        with pytest.raises(paramiko.AuthenticationException):
            connect(harness, "beta", password="guess")
    for kwargs in ({"password": PASSWORD}, {"pkey": accounts["beta"].pkey}):
        with pytest.raises(paramiko.AuthenticationException):
            connect(harness, "beta", **kwargs)  # right credentials, but the address is locked out
    assert harness.metric("gateway_sftp_logins_total", result="locked_out") == 2
    clock.advance(301)
    client, sftp = connect(harness, "beta", password=PASSWORD)
    assert sftp.listdir("/") == ["in", "out"]
    client.close()


def test_source_address_not_allowed(make_harness, accounts) -> None:
    harness = make_harness(
        {
            "acme": SftpPartnerAuth(
                authorized_keys=[accounts["acme"].public_line], allowed_sources=["10.0.0.0/8"]
            ),
            "beta": SftpPartnerAuth(
                authorized_keys=[accounts["beta"].public_line], allowed_sources=["127.0.0.1"]
            ),
        }
    )
    with pytest.raises(paramiko.AuthenticationException):
        connect(harness, "acme", accounts["acme"].pkey)
    assert harness.metric("gateway_sftp_logins_total", result="source_denied") == 1
    client, _ = connect(harness, "beta", accounts["beta"].pkey)
    client.close()


def test_paths_to_another_partner_are_refused(gateway: Harness, accounts) -> None:
    (gateway.roots["beta"] / "out" / "secret.xml").write_text("beta's ack")
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        assert sftp.listdir("/..") == ["in", "out"]  # `..` stops at the partner's root
        assert sftp.normalize("../../beta") == "/beta"
        for path in (
            "/../beta/out/secret.xml",
            "../beta/out/secret.xml",
            "/out/../../beta/out/secret.xml",
            "beta/out/secret.xml",
            str(gateway.roots["beta"] / "out" / "secret.xml"),
        ):
            with pytest.raises(OSError):
                sftp.open(path).read()
            with pytest.raises(OSError):
                sftp.stat(path)
        for path in (
            "/../beta/in/x.xml",
            str(gateway.roots["beta"] / "in" / "x.xml"),
            "/x.xml",
            "/out/x.xml",
        ):
            with pytest.raises(OSError):
                sftp.open(path, "w").close()
        with pytest.raises(OSError):
            sftp.listdir("/../beta/out")
        with pytest.raises(OSError):
            sftp.remove("/../beta/out/secret.xml")
        sftp.putfo(io.BytesIO(b"x"), "/in/x.part")
        with pytest.raises(OSError):
            sftp.rename("/in/x.part", "/../beta/in/x.xml")
        with pytest.raises(OSError):
            sftp.rename("/in/x.part", "/out/x.xml")
        with pytest.raises(OSError):
            sftp.mkdir("/in/sub")
    finally:
        client.close()
    assert (gateway.roots["beta"] / "out" / "secret.xml").exists()
    assert visible(gateway.roots["beta"] / "in") == []
    assert gateway.uploads == []


def test_symlink_escape_is_refused(gateway: Harness, accounts) -> None:
    beta_out = gateway.roots["beta"] / "out"
    (beta_out / "secret.xml").write_text("beta's ack")
    acme_out = gateway.roots["acme"] / "out"
    (acme_out / "dir-link").symlink_to(beta_out)
    (acme_out / "file-link.xml").symlink_to(beta_out / "secret.xml")
    (acme_out / "up-link").symlink_to("../..")
    (acme_out / "mine.xml").write_text("acme's ack")
    (acme_out / "inner-link.xml").symlink_to("mine.xml")  # stays inside: fine
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        assert sorted(sftp.listdir("/out")) == ["inner-link.xml", "mine.xml"]
        for path in ("/out/dir-link/secret.xml", "/out/file-link.xml", "/out/up-link/beta/out/secret.xml"):
            with pytest.raises(PermissionError):
                sftp.open(path).read()
        with pytest.raises(PermissionError):
            sftp.listdir("/out/dir-link")
        with pytest.raises(PermissionError):
            sftp.remove("/out/file-link.xml")
        with sftp.open("/out/inner-link.xml") as fh:
            assert fh.read() == b"acme's ack"
        with pytest.raises(PermissionError):
            sftp.symlink("/out/mine.xml", "/in/link.xml")
        with pytest.raises(PermissionError):
            sftp.symlink(str(beta_out), "/in/link")
        with pytest.raises(OSError):
            sftp.readlink("/out/file-link.xml")
    finally:
        client.close()
    assert (beta_out / "secret.xml").exists()
    assert visible(gateway.roots["acme"] / "in") == []


def test_exec_shell_and_forwarding_are_refused(gateway: Harness, accounts) -> None:
    client, _ = connect(gateway, "acme", accounts["acme"].pkey)
    transport = client.get_transport()
    assert transport is not None
    try:
        with pytest.raises(paramiko.SSHException):
            client.exec_command("id", timeout=10)
        channel = transport.open_session(timeout=10)
        with pytest.raises(paramiko.SSHException):
            channel.invoke_shell()
        channel = transport.open_session(timeout=10)
        with pytest.raises(paramiko.SSHException):
            channel.invoke_subsystem("netconf")
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 5555), timeout=10)
        with pytest.raises(paramiko.SSHException):
            transport.request_port_forward("127.0.0.1", 0)
    finally:
        client.close()


def test_broken_transfer_is_never_taken(gateway: Harness, accounts) -> None:
    inbox = gateway.roots["acme"] / "in"
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    fh = sftp.open("/in/broken.xml", "wb")
    fh.write(os.urandom(200_000))
    fh.flush()
    gateway.wait_for(lambda: len(temps(inbox)) == 1)  # the data sits in a hidden temp file
    assert "broken.xml" not in visible(inbox)
    transport = client.get_transport()
    assert transport is not None
    transport.sock.shutdown(socket.SHUT_RDWR)  # connection lost before the close
    transport.close()
    gateway.wait_for(
        lambda: gateway.metric("gateway_sftp_uploads_total", partner="acme", result="aborted") == 1
    )
    assert visible(inbox) == []
    assert gateway.uploads == []
    gateway.wait_for(lambda: gateway.metric("gateway_sftp_sessions") == 0)


def test_paramiko_filepart_rename_is_announced_once(gateway: Harness, accounts) -> None:
    inbox = gateway.roots["acme"] / "in"
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        sftp.putfo(io.BytesIO(b"<Invoice>1</Invoice>"), "/in/a.xml.filepart")
        assert sftp.listdir("/in") == ["a.xml.filepart"]
        assert gateway.uploads == []
        sftp.rename("/in/a.xml.filepart", "/in/a.xml")
        with pytest.raises(PermissionError):
            sftp.rename("/in/a.xml", "/in/b.xml")  # published names are the gateway's now
        sftp.putfo(io.BytesIO(b"<Invoice>2</Invoice>"), "/in/b.tmp")
        with pytest.raises(OSError):
            sftp.rename("/in/b.tmp", "/in/a.xml")  # not taken yet: refused, nothing overwritten
        sftp.remove("/in/b.tmp")  # a temp name may be cleaned up by the client
    finally:
        client.close()
    assert gateway.uploads == [("acme", inbox / "a.xml", b"<Invoice>1</Invoice>")]
    assert visible(inbox) == ["a.xml"]


def test_name_collision_is_refused_not_overwritten(gateway: Harness, accounts) -> None:
    inbox = gateway.roots["acme"] / "in"
    client, sftp = connect(gateway, "acme", accounts["acme"].pkey)
    try:
        sftp.putfo(io.BytesIO(b"first"), "/in/same.xml")
        with pytest.raises(OSError, match="not been taken"):
            sftp.putfo(io.BytesIO(b"second"), "/in/same.xml")
        # Two handles racing for one name: the first close wins, the second close fails (paramiko
        # ignores close statuses, so the refusal is checked on the server side).
        first = sftp.open("/in/race.xml", "wb")
        second = sftp.open("/in/race.xml", "wb")
        first.write(b"one")
        second.write(b"two")
        first.close()
        second.close()
    finally:
        client.close()
    assert (inbox / "same.xml").read_bytes() == b"first"
    assert (inbox / "race.xml").read_bytes() == b"one"
    assert [path.name for _, path, _ in gateway.uploads] == ["same.xml", "race.xml"]
    assert temps(inbox) == []
    assert gateway.metric("gateway_sftp_uploads_total", partner="acme", result="refused") == 2


def test_max_file_size_and_quota(make_harness, accounts) -> None:
    harness = make_harness(
        {
            "acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line], max_file_size=100_000),
            "beta": SftpPartnerAuth(authorized_keys=[accounts["beta"].public_line], quota_bytes=150_000),
        }
    )
    (harness.roots["beta"] / "out" / "old.ack").write_bytes(b"a" * 50_000)
    client, sftp = connect(harness, "acme", accounts["acme"].pkey)
    try:
        with pytest.raises(OSError):
            sftp.putfo(io.BytesIO(b"x" * 100_001), "/in/big.xml")
        sftp.putfo(io.BytesIO(b"x" * 100_000), "/in/ok.xml")
    finally:
        client.close()
    assert visible(harness.roots["acme"] / "in") == ["ok.xml"]
    assert harness.metric("gateway_sftp_uploads_total", partner="acme", result="too_large") == 1
    client, sftp = connect(harness, "beta", accounts["beta"].pkey)
    try:
        sftp.putfo(io.BytesIO(b"y" * 60_000), "/in/one.xml")  # 110 000 stored
        with pytest.raises(OSError):
            sftp.putfo(io.BytesIO(b"y" * 60_000), "/in/two.xml")  # would be 170 000
        sftp.remove("/out/old.ack")
        sftp.putfo(io.BytesIO(b"y" * 60_000), "/in/two.xml")  # 120 000 now
    finally:
        client.close()
    assert visible(harness.roots["beta"] / "in") == ["one.xml", "two.xml"]
    assert harness.metric("gateway_sftp_uploads_total", partner="beta", result="quota") == 1
    assert [p.name for _, p, _ in harness.uploads] == ["ok.xml", "one.xml", "two.xml"]


def test_twenty_concurrent_clients_fifty_files_each(make_harness, accounts) -> None:
    harness = make_harness(
        {
            "acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line]),
            "beta": SftpPartnerAuth(authorized_keys=[accounts["beta"].public_line]),
        },
    )
    sent: dict[tuple[str, str], bytes] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client_job(index: int) -> None:
        partner = "acme" if index % 2 else "beta"
        try:
            client, sftp = connect(harness, partner, accounts[partner].pkey)
            try:
                for number in range(50):
                    name = f"c{index:02d}-f{number:02d}.xml"
                    body = f"<Invoice n='{index}/{number}'>".encode() + os.urandom(500 + 97 * number)
                    sftp.putfo(io.BytesIO(body), f"/in/{name}")
                    with lock:
                        sent[(partner, name)] = body
            finally:
                client.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client_job, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    assert len(sent) == 1000
    announced = [(partner, path.name) for partner, path, _ in harness.uploads]
    assert len(announced) == 1000 and set(announced) == set(sent)
    for partner, path, content in harness.uploads:
        assert path.parent == harness.roots[partner] / "in"
        assert hashlib.sha256(content).digest() == hashlib.sha256(sent[(partner, path.name)]).digest()
        assert path.read_bytes() == content
    for partner in ("acme", "beta"):
        assert temps(harness.roots[partner] / "in") == []
    assert harness.metric("gateway_sftp_uploads_total", partner="acme", result="ok") == 500


# ---- connection limits --------------------------------------------------------------------------------


def test_partner_max_sessions(make_harness, accounts) -> None:
    harness = make_harness(
        {
            "acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line], max_sessions=2),
            "beta": SftpPartnerAuth(password_hash=hash_password(PASSWORD), max_sessions=1),
        },
        max_login_failures=2,  # the refusals below must not lock the address out
    )
    first, _ = connect(harness, "acme", accounts["acme"].pkey)
    second, second_sftp = connect(harness, "acme", accounts["acme"].pkey)
    with pytest.raises(paramiko.AuthenticationException):
        connect(harness, "acme", accounts["acme"].pkey)
    beta, beta_sftp = connect(harness, "beta", password=PASSWORD)  # another partner is not affected
    with pytest.raises(paramiko.AuthenticationException):
        connect(harness, "beta", password=PASSWORD)
    assert harness.metric("gateway_sftp_logins_total", result="too_many_sessions") == 2
    assert harness.server.partner_session_count("acme") == 2
    assert second_sftp.listdir("/") == ["in", "out"] and beta_sftp.listdir("/") == ["in", "out"]

    transport = first.get_transport()
    assert transport is not None
    transport.sock.shutdown(socket.SHUT_RDWR)  # connection lost abruptly: its slot is freed
    transport.close()
    harness.wait_for(lambda: harness.server.partner_session_count("acme") == 1)
    third, third_sftp = connect(harness, "acme", accounts["acme"].pkey)
    third_sftp.putfo(io.BytesIO(b"<Invoice/>"), "/in/after.xml")
    with pytest.raises(paramiko.AuthenticationException):
        connect(harness, "acme", accounts["acme"].pkey)
    for client in (second, third, beta):
        client.close()
    harness.wait_for(
        lambda: (
            harness.server.partner_session_count("acme") == 0
            and harness.server.partner_session_count("beta") == 0
        )
    )
    client, _ = connect(harness, "beta", password=PASSWORD)
    client.close()
    assert harness.metric("gateway_sftp_logins_total", result="too_many_sessions") == 3
    assert harness.metric("gateway_sftp_logins_total", result="ok") == 5
    assert [p.name for _, p, _ in harness.uploads] == ["after.xml"]


def test_max_connections_refuses_before_the_handshake(make_harness, accounts) -> None:
    capture = LogCapture()
    logger = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()), processors=[capture])
    harness = make_harness(
        {"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])},
        logger=logger,
        max_connections=3,
        max_unauthenticated=3,  # all three may be unauthenticated: this test is about max_connections
    )
    idle = [raw_connection(harness) for _ in range(3)]  # never authenticate: they count all the same
    try:
        for sock in idle:
            assert read_banner(sock).startswith(b"SSH-2.0-")
        assert harness.server.connection_count == 3
        with raw_connection(harness) as extra:
            assert read_until_closed(extra, timeout=10) == b""  # closed without even a version line
        with pytest.raises((paramiko.SSHException, OSError)):
            connect(harness, "acme", accounts["acme"].pkey)
        assert harness.metric("gateway_sftp_logins_total", result="too_many_connections") == 2
        refused = [e for e in capture.entries if e["event"] == "sftp.connection_refused"]
        assert len(refused) == 1  # a flood logs one line per interval, with a count
        assert (refused[0]["result"], refused[0]["max_connections"]) == ("too_many_connections", 3)
    finally:
        for sock in idle:
            sock.close()
    harness.wait_for(lambda: harness.server.connection_count == 0)

    client, sftp = connect(harness, "acme", accounts["acme"].pkey)  # accepted again
    try:
        assert sftp.listdir("/") == ["in", "out"]
        idle = [raw_connection(harness) for _ in range(2)]  # authenticated connections count too
        for sock in idle:
            read_banner(sock)
        with raw_connection(harness) as extra:
            assert read_until_closed(extra, timeout=10) == b""
        for sock in idle:
            sock.close()
    finally:
        client.close()
    assert harness.metric("gateway_sftp_logins_total", result="too_many_connections") == 3


def test_login_timeout_closes_unauthenticated_connections(make_harness, accounts) -> None:
    harness = make_harness(
        {"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])},
        login_timeout_seconds=1.0,
    )
    silent = raw_connection(harness)  # sends nothing at all
    greeting = raw_connection(harness)  # sends its version line, then nothing
    try:
        read_banner(greeting)
        greeting.sendall(b"SSH-2.0-idle_probe\r\n")
        started = time.monotonic()
        assert read_until_closed(silent, timeout=10).startswith(b"SSH-2.0-")
        read_until_closed(greeting, timeout=10)  # the server's KEXINIT at most, then the close
        elapsed = time.monotonic() - started
        assert 0.5 < elapsed < 5, elapsed
    finally:
        silent.close()
        greeting.close()
    harness.wait_for(lambda: harness.server.connection_count == 0)
    assert harness.server.unauthenticated_count("127.0.0.1") == 0
    client, sftp = connect(harness, "acme", accounts["acme"].pkey)  # a real login outlives the timeout
    try:
        later = raw_connection(harness)  # opened after the login: closed by its own timeout...
        try:
            read_until_closed(later, timeout=10)
        finally:
            later.close()
        assert sftp.listdir("/") == ["in", "out"]  # ...while the login, older, still works
    finally:
        client.close()


def test_unauthenticated_connections_per_address(make_harness, accounts) -> None:
    capture = LogCapture()
    logger = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()), processors=[capture])
    harness = make_harness(
        {"acme": SftpPartnerAuth(authorized_keys=[accounts["acme"].public_line])},
        logger=logger,
        max_unauthenticated_per_address=3,
    )
    server = harness.server
    idle = [raw_connection(harness) for _ in range(3)]  # 127.0.0.1 sends nothing, holds its 3 slots
    other: list[socket.socket] = []
    try:
        for sock in idle:
            assert read_banner(sock).startswith(b"SSH-2.0-")
        assert server.unauthenticated_count("127.0.0.1") == 3
        for _ in range(2):
            with raw_connection(harness) as extra:
                assert read_until_closed(extra, timeout=10) == b""  # closed without even a version line
        with pytest.raises((paramiko.SSHException, OSError)):
            connect(harness, "acme", accounts["acme"].pkey)  # a real client from there too
        assert harness.metric("gateway_sftp_logins_total", result="too_many_unauthenticated") == 3
        assert harness.metric("gateway_sftp_logins_total", result="too_many_connections") == 0
        assert server.connection_count == 3  # refused ones never took a max_connections slot
        refused = [e for e in capture.entries if e["event"] == "sftp.connection_refused"]
        assert len(refused) == 1  # a flood logs one line per interval, with a count
        assert (
            refused[0]["result"],
            refused[0]["address"],
            refused[0]["max_unauthenticated_per_address"],
        ) == (
            "too_many_unauthenticated",
            "127.0.0.1",
            3,
        )

        # another address is not affected: idle connections and a login from 127.0.0.2 both work
        other = [raw_connection(harness, source="127.0.0.2") for _ in range(3)]
        for sock in other:
            assert read_banner(sock).startswith(b"SSH-2.0-")
        for sock in other[1:]:
            sock.close()
        harness.wait_for(lambda: server.unauthenticated_count("127.0.0.2") == 1)
        client, sftp = connect(harness, "acme", accounts["acme"].pkey, source="127.0.0.2")
        try:
            assert sftp.listdir("/") == ["in", "out"]
            assert server.unauthenticated_count("127.0.0.2") == 1  # the login no longer counts
        finally:
            client.close()

        # an idle connection from 127.0.0.1 closes: its slot is free again, and only that one
        idle.pop().close()
        harness.wait_for(lambda: server.unauthenticated_count("127.0.0.1") == 2)
        idle.append(raw_connection(harness))
        assert read_banner(idle[-1]).startswith(b"SSH-2.0-")
        with raw_connection(harness) as extra:
            assert read_until_closed(extra, timeout=10) == b""

        # a connection that authenticates stops counting while it stays open
        idle.pop().close()
        harness.wait_for(lambda: server.unauthenticated_count("127.0.0.1") == 2)
        client, sftp = connect(harness, "acme", accounts["acme"].pkey)
        try:
            assert server.unauthenticated_count("127.0.0.1") == 2
            idle.append(raw_connection(harness))  # the third unauthenticated one is accepted
            assert read_banner(idle[-1]).startswith(b"SSH-2.0-")
            with raw_connection(harness) as extra:
                assert read_until_closed(extra, timeout=10) == b""
            sftp.putfo(io.BytesIO(b"<Invoice/>"), "/in/while-flooded.xml")
        finally:
            client.close()
        assert harness.metric("gateway_sftp_logins_total", result="too_many_unauthenticated") == 5
    finally:
        for sock in idle + other:
            sock.close()
    harness.wait_for(lambda: server.connection_count == 0)
    assert server.unauthenticated_count("127.0.0.1") == server.unauthenticated_count("127.0.0.2") == 0
    assert harness.metric("gateway_sftp_logins_total", result="ok") == 2
    assert [p.name for _, p, _ in harness.uploads] == ["while-flooded.xml"]
