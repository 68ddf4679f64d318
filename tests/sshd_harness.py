"""A real OpenSSH `sshd` on a loopback port, started by the test (Debian `openssh-server`).

`SshdHarness(base).start()` writes a throw-away host key, a client key, an `authorized_keys` and a config
file under `base`, runs `sshd -D -e -f <cfg>` (internal-sftp subsystem, public-key login of the current
user only) and waits (bounded) for the SSH banner. `stop()` ends exactly that process; `start()` again
restarts it on the same port with the same keys (server down, then up). `running_sshd` (the body of
a fixture) skips the test with the reason when sshd cannot run here (not installed, not root, no loopback).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def find_sshd() -> str | None:
    for candidate in SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("sshd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return key


class SshdError(RuntimeError):
    pass


class SshdHarness:
    def __init__(self, base: Path, port: int | None = None) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.sshd = find_sshd()
        self.port = port or free_port()
        self.user = getpass.getuser()
        self.upload_dir = base / "upload"
        self.upload_dir.mkdir(exist_ok=True)
        self.host_key_path = base / "ssh_host_ed25519_key"
        self.host_key = write_key(self.host_key_path)
        self.client_key_path = base / "client_ed25519"
        self.client_key = write_key(self.client_key_path)
        self.authorized_keys = base / "authorized_keys"
        self.authorized_keys.write_bytes(self.client_key.export_public_key())
        self.known_hosts = base / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line(self.host_key))
        self.config = base / "sshd_config"
        self.log = base / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self, key: asyncssh.SSHKey) -> str:
        return f"[127.0.0.1]:{self.port} {key.export_public_key().decode().strip()}\n"

    def _write_config(self) -> None:
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_path}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"AllowUsers {self.user}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PidFile none",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 15.0) -> None:
        if self.sshd is None:
            raise SshdError("sshd not found (Debian package openssh-server)")
        if os.geteuid() != 0:
            raise SshdError("sshd needs root to run here (privilege separation)")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        self._write_config()
        check = subprocess.run([self.sshd, "-t", "-f", str(self.config)], capture_output=True, timeout=30)
        if check.returncode != 0:
            raise SshdError(f"sshd -t refused the config: {check.stderr.decode(errors='replace')}")
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(
                [self.sshd, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SshdError(f"sshd exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            if self._banner():
                return
            time.sleep(0.05)
        self.stop()
        raise SshdError(f"sshd did not answer on port {self.port} within {timeout} s")

    def _banner(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def session_pids(self) -> list[int]:
        """Processes the running sshd forked for client connections (its descendants, from /proc)."""
        if self.process is None:
            return []
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = [], [self.process.pid]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += children
            frontier = children
        return found

    def kill_sessions(self) -> None:
        """End every client connection (the listener stays): what a server restart does to them."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.session_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")

    def stop(self) -> None:
        self.kill_sessions()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        deadline = time.monotonic() + 10  # the listener is gone when a connect is refused
        while self._banner() and time.monotonic() < deadline:
            time.sleep(0.05)

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.upload_dir.iterdir())}


def running_sshd(base: Path) -> Iterator[SshdHarness]:
    """Body of an `sshd` fixture: `yield from running_sshd(tmp_path / "sshd")`; skips when sshd cannot run."""
    harness = SshdHarness(base)
    try:
        harness.start()
    except (SshdError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot start OpenSSH sshd: {exc}")
    try:
        yield harness
    finally:
        harness.stop()
