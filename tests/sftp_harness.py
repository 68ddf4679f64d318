"""An SftpServer on an ephemeral port, run by its own event loop in a background thread (SFTP tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest

from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.inbound.sftp_server import SftpPartner, SftpServer
from gateway.telemetry.metrics import Metrics


class ManualClock:
    """A Clock the test moves: `advance(seconds)` instead of sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._monotonic = 1000.0

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._monotonic += seconds


class Harness:
    def __init__(
        self,
        base: Path,
        auths: dict[str, SftpPartnerAuth],
        logger: object = None,
        server_options: dict[str, Any] | None = None,  # clock, lockouts, password_verifier, write_at
        **config: object,
    ) -> None:
        self.base = base
        self.metrics = Metrics()
        self.uploads: list[tuple[str, Path, bytes]] = []
        self.on_upload_hook: Callable[[str, Path], None] | None = None
        self.roots = {pid: base / "partners" / pid for pid in auths}
        partners = {pid: SftpPartner(pid, self.roots[pid], auth) for pid, auth in auths.items()}
        self.config = SftpServerConfig(port=0, **config)  # type: ignore[arg-type]
        self.host_key = base / "data" / "ssh_host_ed25519_key"
        self.server = SftpServer(
            self.config,
            partners,
            self.host_key,
            self._on_upload,
            self.metrics,
            logger,
            **(server_options or {}),
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stopped = False
        self.call(self.server.start())
        self.port = self.server.port

    def _on_upload(self, partner: str, path: Path) -> None:
        assert threading.current_thread() is self.thread
        self.uploads.append((partner, path, path.read_bytes()))  # complete at the moment it is announced
        if self.on_upload_hook:
            self.on_upload_hook(partner, path)

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.02)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.call(self.server.stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    started: list[Harness] = []

    def factory(auths: dict[str, SftpPartnerAuth], base: Path | None = None, **kwargs: object) -> Harness:
        harness = Harness(base or tmp_path / f"h{len(started)}", auths, **kwargs)
        started.append(harness)
        return harness

    yield factory
    for harness in started:
        harness.close()


@dataclass
class Account:
    key_path: Path
    pkey: paramiko.PKey
    public_line: str


def make_account(directory: Path, name: str) -> Account:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = directory / f"{name}_ed25519"
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return Account(
        path, paramiko.Ed25519Key.from_private_key_file(str(path)), key.export_public_key().decode()
    )


def raw_connection(harness: Harness, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", harness.port), timeout=10, source_address=(source, 0))


def read_banner(sock: socket.socket) -> bytes:
    """The server's SSH version line: proof that it accepted (and counts) the connection."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(256)
        assert chunk, f"closed before the banner ({data!r})"
        data += chunk
    return data


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it stays open)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data
