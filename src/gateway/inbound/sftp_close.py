"""Adapter: tell a client's FXP_CLOSE from asyncssh's clean-up of a lost session's handles.

asyncssh calls `SFTPServer.close(file_obj)` in both cases and its public API does not say which;
only a close the client asked for may publish an upload (a lost connection must never publish a
truncated file). The only caller that is a client request is `SFTPServerHandler._process_close`, a
private method: this module is the one place that knows it. `ClientCloseDetector()` checks, when the
server starts, that asyncssh still has that method and that it calls `close`; if not, the server
refuses to start with a message saying what to do (every upload would otherwise be treated as aborted,
never as published: it fails safe, but fails loudly first).
"""

from __future__ import annotations

import inspect
import sys
from types import CodeType

import asyncssh
import asyncssh.sftp

SUPPORTED = "asyncssh >= 2.14, < 3"


class CloseDetectionUnavailable(RuntimeError):
    """asyncssh's internals no longer match what the adapter relies on."""


def _handler_close_code(handler: object) -> CodeType:
    method = getattr(handler, "_process_close", None)
    code = getattr(method, "__code__", None)
    version = getattr(asyncssh, "__version__", "?")
    if not isinstance(code, CodeType):
        raise CloseDetectionUnavailable(
            f"asyncssh {version} has no SFTPServerHandler._process_close: the SFTP server cannot tell a "
            f"client's close from a lost connection; install {SUPPORTED}"
        )
    if not inspect.iscoroutinefunction(method) or "close" not in code.co_names:
        raise CloseDetectionUnavailable(
            f"asyncssh {version}: SFTPServerHandler._process_close no longer calls the server's close(); "
            f"the SFTP server cannot tell a client's close from a lost connection; install {SUPPORTED}"
        )
    return code


class ClientCloseDetector:
    """`is_client_close()`, called first thing in `SFTPServer.close`, says who called it."""

    def __init__(self, handler: object | None = None) -> None:
        if handler is None:
            handler = getattr(asyncssh.sftp, "SFTPServerHandler", None)
        self._code = _handler_close_code(handler)

    def is_client_close(self, depth: int = 1) -> bool:
        """True when the caller `depth` frames above this one's caller is the client-close handler."""
        return sys._getframe(depth + 1).f_code is self._code
