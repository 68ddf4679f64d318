"""Runs the asyncssh SFTP server on its own event loop thread, as a start/stop service of the daemon."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.datadir import DataDir
from gateway.inbound.sftp_server import SftpPartner, SftpServer
from gateway.store.db import Store
from gateway.store.lockouts import StoredLockouts
from gateway.telemetry.metrics import Metrics

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


def host_key_path(data_dir: DataDir, config: GatewayConfig) -> Path:
    """`[sftp] host_key` (relative to the data dir), or `<data dir>/ssh_host_ed25519_key`."""
    path = Path(config.sftp.host_key) if config.sftp.host_key else data_dir.root / "ssh_host_ed25519_key"
    return path if path.is_absolute() else data_dir.root / path


class SftpService:
    def __init__(
        self,
        data_dir: DataDir,
        config: GatewayConfig,
        on_upload: Callable[[str, Path], None],
        metrics: Metrics,
        store: Store | None = None,  # where lockouts are kept across restarts; None = in memory only
    ) -> None:
        partners = {
            pid: SftpPartner(pid, data_dir.partner_root(config, pid), p.sftp)
            for pid, p in config.partners.items()
            if p.enabled and p.sftp is not None
        }
        lockouts = StoredLockouts(store) if store is not None else None
        self.server = SftpServer(
            config.sftp, partners, host_key_path(data_dir, config), on_upload, metrics, lockouts=lockouts
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        """Start listening; a failure (port in use, host key refused) raises at once, nothing left running."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="sftp", daemon=True)
        thread.start()
        if not started.wait(START_TIMEOUT_SECONDS):
            raise TimeoutError(f"SFTP server did not start within {START_TIMEOUT_SECONDS:.0f} s")
        if failure:
            thread.join(STOP_TIMEOUT_SECONDS)
            loop.close()  # never ran forever: nothing to stop later
            raise failure[0]
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.server.stop(), loop)
        try:
            future.result(STOP_TIMEOUT_SECONDS)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT_SECONDS)
            loop.close()
            self._loop = self._thread = None
