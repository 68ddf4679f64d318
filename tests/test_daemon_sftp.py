"""End to end over SFTP: the real daemon, real clients, every uploaded file acknowledged exactly once."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import asyncssh
import paramiko
import pytest

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_ubl

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port: int, key_path: Path) -> paramiko.SFTPClient:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username="acme", pkey=paramiko.Ed25519Key.from_private_key_file(str(key_path)))
    return paramiko.SFTPClient.from_transport(transport)


def _disconnect(sftp: paramiko.SFTPClient) -> None:
    transport = sftp.get_channel().get_transport()
    sftp.close()
    transport.close()  # SFTPClient.close() leaves the SSH connection (and its session slot) open


def test_twenty_sftp_clients_fifty_files_each_all_acknowledged_once(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp_path / "acme_key"
    key.write_private_key(str(key_path))
    public = key.export_public_key().decode().strip()
    port = _free_port()
    extra = f'[partners.acme.sftp]\nauthorized_keys = ["{public}"]\nmax_sessions = 25\n'
    daemon = Daemon(tmp_path / "data", extra=extra)
    config = daemon.data_dir / "gateway.toml"
    config.write_text(
        config.read_text().replace("[sftp]\nenabled = false", f"[sftp]\nenabled = true\nport = {port}")
    )

    with daemon as d:
        d.start()
        errors: list[BaseException] = []

        def upload(client_no: int) -> None:
            try:
                sftp = _client(port, key_path)
                for i in range(50):
                    data = make_ubl(lines=1, number=f"S{client_no:02d}-{i:02d}")
                    sftp.putfo(io.BytesIO(data), f"/in/c{client_no:02d}-{i:02d}.xml")
                _disconnect(sftp)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=upload, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        wait_for(lambda: len(d.acks("acme")) >= 1000, 400, "1000 acknowledgements", d)

        names = [f"c{c:02d}-{i:02d}.xml" for c in range(20) for i in range(50)]
        for name in names:
            assert len(d.acks_for(name, "acme")) == 1, name
        assert len(d.acks("acme")) == 1000

        # the partner reads its acknowledgement over SFTP, then deletes it
        sftp = _client(port, key_path)
        listed = [n for n in sftp.listdir("/out") if n.endswith(".ack.xml")]
        assert len(listed) == 1000
        with sftp.open(f"/out/{listed[0]}") as fh:
            body = fh.read()
        assert b"<Status>" in body
        sftp.remove(f"/out/{listed[0]}")
        _disconnect(sftp)
        assert len(d.acks("acme")) == 999
        assert d.stop() == 0

    flows = d.flows()
    assert len(flows) == 1000 and {state for _, _, state in flows} <= {"ACKNOWLEDGED", "REJECTED"}
    sample = read_ack(d.acks("acme")[0])
    assert sample["status"] in ("Ok", "Error")


def test_openssh_client_uploads_and_fetches_its_ack(tmp_path: Path) -> None:
    import shutil
    import subprocess

    sftp_client = shutil.which("sftp")
    if sftp_client is None:
        pytest.skip("OpenSSH sftp client not installed")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp_path / "acme_key"
    key_path.write_bytes(key.export_private_key())
    key_path.chmod(0o600)
    public = key.export_public_key().decode().strip()
    port = _free_port()
    daemon = Daemon(tmp_path / "data", extra=f'[partners.acme.sftp]\nauthorized_keys = ["{public}"]\n')
    config = daemon.data_dir / "gateway.toml"
    config.write_text(
        config.read_text().replace("[sftp]\nenabled = false", f"[sftp]\nenabled = true\nport = {port}")
    )
    work = tmp_path / "partner"
    work.mkdir()
    (work / "invoice.xml").write_bytes(make_ubl(lines=2, number="OSSH-1"))

    def batch(commands: str) -> subprocess.CompletedProcess[str]:
        (work / "batch").write_text(commands)
        return subprocess.run(
            [sftp_client, "-b", "batch", "-i", str(key_path), "-P", str(port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "acme@127.0.0.1"],
            cwd=work, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    with daemon as d:
        d.start()
        upload = batch("put invoice.xml /in/invoice.xml\n")
        assert upload.returncode == 0, upload.stderr
        wait_for(lambda: bool(d.acks_for("invoice.xml", "acme")), 60, "the ack of the OpenSSH upload", d)
        ack_name = d.acks_for("invoice.xml", "acme")[0].name
        download = batch(f"get /out/{ack_name} ack.xml\nrm /out/{ack_name}\n")
        assert download.returncode == 0, download.stderr
        assert d.stop() == 0
    ack = read_ack(work / "ack.xml")
    assert ack["status"] == "Ok" and ack["flow_status"] == "IN_INTEGRE"
    assert not d.acks("acme")
