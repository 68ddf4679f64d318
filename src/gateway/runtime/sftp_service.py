"""Runs the asyncssh SFTP server on its own event loop thread, as a start/stop service of the daemon."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.datadir import DataDir
from gateway.inbound.sftp_server import SftpPartner, SftpServer
from gateway.telemetry.metrics import Metrics


class SftpService:
    def __init__(
        self,
        data_dir: DataDir,
        config: GatewayConfig,
        on_upload: Callable[[str, Path], None],
        metrics: Metrics,
    ) -> None:
        partners = {
            pid: SftpPartner(pid, data_dir.partner_root(config, pid), p.sftp)
            for pid, p in config.partners.items()
            if p.enabled and p.sftp is not None
        }
        host_key = (
            Path(config.sftp.host_key) if config.sftp.host_key else data_dir.root / "ssh_host_ed25519_key"
        )
        if not host_key.is_absolute():
            host_key = data_dir.root / host_key
        self.server = SftpServer(config.sftp, partners, host_key, on_upload, metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
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

        self._loop = loop
        self._thread = threading.Thread(target=run, name="sftp", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise failure[0]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.server.stop(), loop)
        try:
            future.result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(15)
            loop.close()
            self._loop = self._thread = None
