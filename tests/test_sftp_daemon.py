"""The SFTP server inside the real daemon: start failures, the fingerprint command, long names end to end."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import paramiko
import pytest

from gateway.cli import main as gateway_main

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_ubl

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sftp_daemon(data_dir: Path, port: int, extra: str = "") -> Daemon:
    daemon = Daemon(data_dir, extra=extra)
    config = daemon.data_dir / "gateway.toml"
    config.write_text(
        config.read_text().replace("[sftp]\nenabled = false", f"[sftp]\nenabled = true\nport = {port}")
    )
    return daemon


def _run_until_exit(data_dir: Path, timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "could not start" in line]


def test_port_in_use_is_a_one_line_error_and_a_quick_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _sftp_daemon(tmp_path / "data", port)
        code, output, elapsed = _run_until_exit(tmp_path / "data")
    assert code != 0
    assert elapsed < 20, elapsed  # no 15 s wait on a loop that never ran
    [line] = _error_lines(output)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    assert "Traceback" not in output and "never awaited" not in output


def test_host_key_readable_by_others_stops_the_daemon(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _sftp_daemon(data_dir, _free_port())
    key_path = data_dir / "ssh_host_ed25519_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key_path))
    key_path.chmod(0o640)
    code, output, _ = _run_until_exit(data_dir)
    assert code != 0
    [line] = _error_lines(output)
    assert "host key" in line and f"chmod 600 {key_path}" in line
    assert "Traceback" not in output


def test_fingerprint_command_matches_openssh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    _sftp_daemon(data_dir, _free_port())
    assert gateway_main(["sftp", "fingerprint", "--data-dir", str(data_dir)]) == 0  # generates the key
    first = capsys.readouterr()
    assert "generated" in first.err
    printed = first.out.strip()
    assert printed.startswith("SHA256:") and "=" not in printed
    assert gateway_main(["sftp", "fingerprint", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip() == printed  # the same key the next time
    key_path = data_dir / "ssh_host_ed25519_key"
    assert (key_path.stat().st_mode & 0o777) == 0o600
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("ssh-keygen not installed")
    shown = subprocess.run([keygen, "-l", "-f", str(key_path)], capture_output=True, text=True, check=True)
    assert shown.stdout.split()[1] == printed
    assert gateway_main(["sftp", "fingerprint", "--data-dir", str(tmp_path / "nowhere")]) == 2


@pytest.mark.slow
def test_a_250_byte_name_uploaded_over_sftp_is_acknowledged(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp_path / "acme_key"
    key.write_private_key(str(key_path))
    public = key.export_public_key().decode().strip()
    port = _free_port()
    name = ("facture-" + "x" * 300)[:246] + ".xml"
    assert len(name.encode()) == 250
    daemon = _sftp_daemon(tmp_path / "data", port, f'[partners.acme.sftp]\nauthorized_keys = ["{public}"]\n')
    with daemon as d:
        d.start()
        transport = paramiko.Transport(("127.0.0.1", port))
        try:
            transport.connect(username="acme", pkey=paramiko.Ed25519Key.from_private_key_file(str(key_path)))
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.putfo(io.BytesIO(make_ubl(lines=1, number="LONG-1")), f"/in/{name}")
            sftp.close()
        finally:
            transport.close()
        wait_for(lambda: len(d.acks("acme")) == 1, 60, "the acknowledgement of the long name", d)
        assert d.stop() == 0
    [ack_path] = d.acks("acme")
    assert len(ack_path.name.encode()) <= 255
    ack = read_ack(ack_path)
    assert ack["status"] == "Ok"
    assert ack["doc"].findtext("{urn:flow-gateway:ack:1}FileName") == name  # type: ignore[union-attr]
    assert [filename for _, filename, _ in d.flows()] == [name]
