"""uvicorn in a thread, as a daemon service (`start()` / `stop()`), for both HTTP listeners.

`UvicornThread` binds the socket itself (a taken port is a clear `ConfigError` at start, port 0 gives
the real port at once), with a large listen backlog, and runs uvicorn's asyncio server in its own
thread: many concurrent connections cost one event loop, not a thread each. Blocking work (database,
fsync) runs in the loop's thread pool.

`ApiServer` serves the `[api]` application (gateway/api/app.py): HTTPS when `tls_cert_file` and
`tls_key_file` are set; behind a reverse proxy, `trusted_proxies` lists the proxy addresses whose
`X-Forwarded-For` / `X-Forwarded-Proto` uvicorn believes (client address in logs and rate limits of
failed logins, scheme in URLs). Separate from the unauthenticated monitoring listener.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from starlette.types import ASGIApp

from gateway.api.app import ApiContext, build_api_app
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store

BACKLOG = 2048
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


class UvicornThread:
    """One ASGI app on one listening socket, served by uvicorn in a daemon thread."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str,
        host: str,
        port: int,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        forwarded_allow_ips: list[str] | None = None,
        limit_concurrency: int | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.host = host
        self.requested_port = port
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.forwarded_allow_ips = forwarded_allow_ips or []
        self.limit_concurrency = limit_concurrency
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.failure: BaseException | None = None

    @property
    def port(self) -> int:
        if self._socket is not None:
            return int(self._socket.getsockname()[1])
        return self.requested_port

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=bool(self.forwarded_allow_ips),
            forwarded_allow_ips=self.forwarded_allow_ips or None,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
            backlog=BACKLOG,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,
            limit_concurrency=self.limit_concurrency,
            http="h11",
            loop="asyncio",
        )
        try:
            config.load()  # TLS files are read here: a bad one is a clear error now, not in the thread
        except (OSError, ValueError) as exc:
            sock.close()
            raise ConfigError(f"{self.name}: cannot load TLS certificate/key: {exc}") from None
        server = uvicorn.Server(config)
        self._socket = sock
        self._server = server
        self.failure = None
        self._thread = threading.Thread(target=self._run, args=(server, sock), name=self.name, daemon=True)
        self._thread.start()
        ready = threading.Event()
        deadline = START_TIMEOUT_SECONDS
        while not server.started and self._thread.is_alive() and deadline > 0:
            ready.wait(0.02)
            deadline -= 0.02
        if not server.started:
            self.stop()
            raise ConfigError(f"{self.name}: the HTTP server did not start ({self.failure or 'timeout'})")

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"{self.name}: cannot listen on {self.host}:{self.requested_port}: {exc.strerror or exc}"
            ) from None
        sock.setblocking(False)
        return sock

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start() / the log
            self.failure = exc
            structlog.get_logger("gateway.http").error(
                "http server stopped on an error", server=self.name, error=f"{type(exc).__name__}: {exc}"
            )

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                server.force_exit = True
                self._thread.join(STOP_TIMEOUT_SECONDS)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class ApiServer:
    """The `[api]` listener as a daemon service (registered in `Gateway.extra_services`)."""

    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        intake: Intake,
        blobs: BlobStore,
        ack_dir: Callable[[str], Path],
        *,
        root: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """`extra` reaches mounted parts through `ApiContext.extra` (the console reads `data_dir`)."""
        self.config = config
        self.context = ApiContext(
            config=config, store=store, intake=intake, blobs=blobs, ack_dir=ack_dir, extra=dict(extra or {})
        )
        self.root = root
        self.log = structlog.get_logger("gateway.api")
        self._http: UvicornThread | None = None

    @property
    def port(self) -> int:
        return self._http.port if self._http is not None else self.config.api.port

    def _path(self, text: str) -> str | None:
        if not text:
            return None
        path = Path(text)
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return str(path)

    def start(self) -> None:
        api = self.config.api
        if not api.enabled or self._http is not None:
            return
        http = UvicornThread(
            build_api_app(self.context),
            name="api",
            host=api.host,
            port=api.port,
            ssl_certfile=self._path(api.tls_cert_file),
            ssl_keyfile=self._path(api.tls_key_file),
            forwarded_allow_ips=list(api.trusted_proxies),
            limit_concurrency=api.max_connections,
        )
        http.start()
        self._http = http
        self.log.info(
            "api server listening",
            host=api.host,
            port=http.port,
            tls=bool(api.tls_cert_file),
            trusted_proxies=list(api.trusted_proxies),
        )

    def stop(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            http.stop()
            self.log.info("api server stopped")
