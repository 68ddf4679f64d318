"""The operators web console (issue 22): `console_routes(store, config, data_dir)` to mount under /console."""

from __future__ import annotations

from gateway.console.web import console_app, console_routes

__all__ = ["console_app", "console_routes"]
