"""The AS2 listener: a Starlette app on uvicorn in a daemon thread, a service with start()/stop().

`POST <as2.path>` takes one AS2 message; the blocking work (decryption, fsync, database) runs in the
loop's thread pool. Bodies larger than `as2.max_message_bytes` are refused with 413 before they are read
whole. The socket is bound by `start()` itself, so a taken port is a clear error at start and port 0
gives the real port at once (`port`).
"""

from __future__ import annotations

import socket
import threading

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.as2.config import As2Config
from gateway.as2.receiver import As2Receiver
from gateway.errors import ConfigError

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


def build_as2_app(receiver: As2Receiver, config: As2Config) -> Starlette:
    async def as2_post(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_message_bytes:
            return PlainTextResponse("message too large\n", status_code=413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_message_bytes:
                return PlainTextResponse("message too large\n", status_code=413)
            chunks.append(chunk)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            answer = await run_in_threadpool(receiver.receive, headers, b"".join(chunks))
        except Exception:  # noqa: BLE001 - logged; the partner gets a 500 and resends
            structlog.get_logger("gateway.as2").exception("as2 message failed")
            return PlainTextResponse("internal error\n", status_code=500)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)

    async def as2_get(_request: Request) -> Response:
        return PlainTextResponse("AS2 endpoint: POST messages here\n", status_code=200)

    return Starlette(routes=[Route(config.path, as2_post, methods=["POST"]), Route(config.path, as2_get)])


class As2Service:
    """The `[as2]` listener as a daemon service of the supervisor."""

    def __init__(self, receiver: As2Receiver, config: As2Config) -> None:
        self.config = config
        self.app = build_as2_app(receiver, config)
        self.log = structlog.get_logger("gateway.as2")
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is not None:
            return int(self._socket.getsockname()[1])
        return self.config.port

    def start(self) -> None:
        if self._server is not None:
            return
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
            sock.listen(512)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"as2: cannot listen on {self.config.host}:{self.config.port}: {exc.strerror}"
            ) from None
        config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False, server_header=False,
            timeout_keep_alive=5, timeout_graceful_shutdown=5, http="h11", loop="asyncio",
        )  # fmt: skip
        server = uvicorn.Server(config)
        self._socket, self._server = sock, server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="as2-http", daemon=True
        )
        self._thread.start()
        ready = threading.Event()
        waited = 0.0
        while not server.started and self._thread.is_alive() and waited < START_TIMEOUT_SECONDS:
            ready.wait(0.02)
            waited += 0.02
        if not server.started:
            self.stop()
            raise ConfigError("as2: the HTTP server did not start")
        self.log.info("as2 listening", host=self.config.host, port=self.port, path=self.config.path)

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(STOP_TIMEOUT_SECONDS)
        if sock is not None:
            sock.close()
        self._socket = None
