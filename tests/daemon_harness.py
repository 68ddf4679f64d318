"""Run the real gateway daemon as a subprocess on a throw-away data dir (used by integration tests).

The harness sees the daemon as an operator does: it is started when `/readyz` answers 200 on the
monitoring port (always on, on a free loopback port), and its flows are read through the monitoring
API (`/api/flows`), never from the database file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lxml import etree

ACK_NS = {"a": "urn:flow-gateway:ack:1"}

FAST_CONFIG = """
[intake]
scan_interval_seconds = 0.5
min_age_seconds = 0.2
max_flow_bytes = {max_bytes}

[workers]
threads = 2
backoff_base_seconds = 0.2

[acks]
json_copy = {json_copy}

[metrics]
port = {metrics_port}

[sftp]
enabled = false

[validation]
workers = 2

[partners.demo]
name = "Demo"

[partners.acme]
name = "ACME"
{extra}
"""


class Daemon:
    def __init__(self, data_dir: Path, *, max_bytes: int = 1_000_000, json_copy: bool = False,
                 metrics_port: int = 0, extra: str = "") -> None:  # fmt: skip
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = metrics_port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "gateway.toml").write_text(
            FAST_CONFIG.format(
                max_bytes=max_bytes,
                json_copy=str(json_copy).lower(),
                metrics_port=self.metrics_port,
                extra=extra,
            )  # fmt: skip
        )
        self.stderr_path = data_dir / "daemon.stderr.log"

    def inbox(self, partner: str = "demo") -> Path:
        return self.data_dir / "partners" / partner / "in"

    def outbox(self, partner: str = "demo") -> Path:
        return self.data_dir / "partners" / partner / "out"

    def start(self, *args: str) -> None:
        stderr = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--data-dir", str(self.data_dir), *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_for(self.ready, 90, "daemon ready (/readyz)", self)

    @property
    def monitoring_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def ready(self) -> bool:
        """/readyz answers 200: store, intake, servers and the validation warm-up are up."""
        try:
            with urllib.request.urlopen(f"{self.monitoring_url}/readyz", timeout=5) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def log_has(self, text: str) -> bool:
        return self.stderr_path.exists() and text in self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def drop(self, name: str, data: bytes, partner: str = "demo") -> None:
        """Drop like a careful partner: write a temp name, rename into place."""
        inbox = self.inbox(partner)
        tmp = inbox / f"{name}.part"
        tmp.write_bytes(data)
        tmp.replace(inbox / name)

    def acks(self, partner: str = "demo") -> list[Path]:
        out = self.outbox(partner)
        return sorted(p for p in out.glob("*.ack.xml")) if out.exists() else []

    def acks_for(self, name: str, partner: str = "demo") -> list[Path]:
        return [
            p
            for p in self.acks(partner)
            if p.name.startswith(name + ".") and p.name[len(name) + 1 :].count(".") == 2
        ]

    def flows(self) -> list[tuple[str, str, str]]:
        """(id, file name, state) of every flow: through the running daemon's monitoring API, or the
        `gateway flows` command when the daemon is not running."""
        if self.proc is not None and self.proc.poll() is None:
            with urllib.request.urlopen(f"{self.monitoring_url}/api/flows?limit=1000", timeout=30) as answer:
                rows = json.loads(answer.read())["flows"]
        else:
            listed = subprocess.run(
                [sys.executable, "-m", "gateway.cli", "flows", "--json", "--limit", "100000",
                 "--data-dir", str(self.data_dir)],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            rows = json.loads(listed.stdout)
        return [(flow["id"], flow["filename"], flow["state"]) for flow in rows]

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, daemon: Daemon | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
            raise AssertionError(
                f"daemon died while waiting for {what}:\n{daemon.stderr_path.read_text()[-4000:]}"
            )
        time.sleep(0.1)
    tail = daemon.stderr_path.read_text()[-4000:] if daemon and daemon.stderr_path.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def read_ack(path: Path) -> dict[str, object]:
    doc = etree.parse(str(path)).getroot()
    return {
        "status": doc.findtext("a:Status", namespaces=ACK_NS),
        "flow_status": doc.findtext("a:FlowStatus", namespaces=ACK_NS),
        "reasons": [
            d.findtext("a:ReasonCode", namespaces=ACK_NS)
            for d in doc.findall("a:Details/a:Detail", namespaces=ACK_NS)
        ],
        "messages": [
            d.findtext("a:ReasonMessage", namespaces=ACK_NS)
            for d in doc.findall("a:Details/a:Detail", namespaces=ACK_NS)
        ],
        "flow_id": doc.findtext("a:FlowId", namespaces=ACK_NS),
        "doc": doc,
    }
