"""Exception tree: TransientError is retried with backoff, PermanentError rejects the flow."""

from __future__ import annotations

from gateway.model import ReasonCode


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; the message names the key path."""


class SchemaError(GatewayError):
    """The database schema does not match this gateway's code; the message says what to run."""


class TransientError(GatewayError):
    """Worth retrying later (I/O hiccup, database busy, worker pool restarting)."""


class PermanentError(GatewayError):
    """The flow itself is at fault: reject it with a stable reason code and a clear message."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class IdentifyError(PermanentError):
    """The flow's bytes are not something the gateway can read (usually IRR_SYNTAX)."""

    def __init__(self, message: str, reason: ReasonCode = ReasonCode.SYNTAX) -> None:
        super().__init__(reason, message)
