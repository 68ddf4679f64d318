"""A close the SFTP server answered is never lost: SIGKILL right after confirmed closes, then restart.

The real daemon (`gateway run`) and real clients: OpenSSH's `sftp -b` (one put after the other, each
waiting for its close) and paramiko. Every upload the server confirmed must become exactly one flow
with exactly one acknowledgement once the daemon is back, whatever the recorder thread had done
when the process died.
"""

from __future__ import annotations

import io
import shutil
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import asyncssh
import paramiko
import pytest

from daemon_harness import Daemon, wait_for
from invoice_factory import make_ubl

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH sftp client missing"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sftp_daemon(tmp_path: Path) -> tuple[Daemon, int, Path]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp_path / "acme_key"
    key.write_private_key(str(key_path))
    key_path.chmod(0o600)
    public = key.export_public_key().decode().strip()
    port = _free_port()
    daemon = Daemon(tmp_path / "data", extra=f'[partners.acme.sftp]\nauthorized_keys = ["{public}"]\n')
    config = daemon.data_dir / "gateway.toml"
    config.write_text(
        config.read_text().replace("[sftp]\nenabled = false", f"[sftp]\nenabled = true\nport = {port}")
    )
    return daemon, port, key_path


def _flows_by_name(daemon: Daemon) -> dict[str, int]:
    counts: dict[str, int] = {}
    with sqlite3.connect(daemon.data_dir / "gateway.db") as conn:
        for (name,) in conn.execute("SELECT filename FROM flows WHERE partner = 'acme'"):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _restart_and_check(daemon: Daemon, confirmed: list[str], attempted: list[str]) -> None:
    daemon.start()
    wait_for(
        lambda: all(daemon.acks_for(n, "acme") for n in confirmed), 300, "acks of confirmed uploads", daemon
    )
    flows = _flows_by_name(daemon)
    for name in confirmed:
        assert flows.get(name) == 1, f"{name}: {flows.get(name)} flows"
        assert len(daemon.acks_for(name, "acme")) == 1, name
    for name in set(attempted) - set(confirmed):  # not confirmed: taken at most once
        assert flows.get(name, 0) <= 1, name
    assert set(flows) <= set(attempted)
    wait_for(lambda: len(daemon.acks("acme")) == sum(flows.values()), 120, "one ack per flow", daemon)
    assert not list((daemon.data_dir / "spool" / "claim" / "acme").glob("*/*")), "claims left behind"


def test_sigkill_right_after_a_confirmed_sftp_batch_loses_nothing(tmp_path: Path) -> None:
    daemon, port, key_path = _sftp_daemon(tmp_path)
    local = tmp_path / "local"
    local.mkdir()
    names = [f"batch-{i:03d}.xml" for i in range(60)]
    for i, name in enumerate(names):
        (local / name).write_bytes(make_ubl(lines=1, number=f"K{i:03d}"))
    (local / "batch.txt").write_text("".join(f"put {n} in/{n}\n" for n in names))
    argv = [
        "sftp", "-F", "/dev/null", "-b", "batch.txt", "-i", str(key_path), "-P", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "acme@127.0.0.1",
    ]  # fmt: skip
    with daemon as d:
        d.start()
        result = subprocess.run(argv, cwd=local, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr  # every close was answered OK
        d.kill()  # at once: the recorder may still hold some claims, the workers most flows
        _restart_and_check(d, names, names)


def test_sigkill_while_a_client_uploads_loses_no_confirmed_file(tmp_path: Path) -> None:
    daemon, port, key_path = _sftp_daemon(tmp_path)
    confirmed: list[str] = []
    attempted: list[str] = []
    enough = threading.Event()

    def upload() -> None:
        try:
            transport = paramiko.Transport(("127.0.0.1", port))
            transport.connect(username="acme", pkey=paramiko.Ed25519Key.from_private_key_file(str(key_path)))
            sftp = paramiko.SFTPClient.from_transport(transport)
            for i in range(400):
                name = f"live-{i:03d}.xml"
                attempted.append(name)
                sftp.putfo(io.BytesIO(make_ubl(lines=1, number=f"L{i:03d}")), f"/in/{name}", confirm=False)
                confirmed.append(name)  # putfo returned: the server answered the close OK
                if len(confirmed) >= 25:
                    enough.set()
        except Exception:  # noqa: BLE001 - the daemon is killed under the client's feet
            pass
        finally:
            enough.set()

    with daemon as d:
        d.start()
        client = threading.Thread(target=upload, daemon=True)
        client.start()
        assert enough.wait(240)
        d.kill()
        client.join(60)
        assert not client.is_alive()
        assert len(confirmed) < 400, "the upload finished before the kill; the test proves nothing"
        _restart_and_check(d, list(confirmed), list(attempted))
