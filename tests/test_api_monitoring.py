"""Issue 16 item 12: the monitoring listener on uvicorn (1,000 concurrent GETs do not starve /healthz),
`since` overflows answered 400 / a usage error, exposed listeners warned about by check-config."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import MetricsConfig
from gateway.runtime.supervisor import Health
from gateway.store.db import Store
from gateway.telemetry.http import MonitoringServer
from gateway.telemetry.metrics import Metrics

CONCURRENT = 1000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MonitoringServer]:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    store.migrate()
    health = Health()
    health.set("database", True)
    server = MonitoringServer(MetricsConfig(port=0), store, Metrics(), health, {}, rule_packs=[])
    server.start()
    yield server
    server.stop()
    store.close()


async def _get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: monitoring\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        return int(status_line.split()[1])
    finally:
        writer.close()


async def _storm(port: int) -> tuple[list[int], list[int], float]:
    """1,000 connections to /healthz at once, with database-backed requests mixed in."""
    started = time.monotonic()
    health = [_get(port, "/healthz") for _ in range(CONCURRENT)]
    busy = [_get(port, path) for _ in range(20) for path in ("/api/stats", "/metrics", "/readyz")]
    results = await asyncio.wait_for(asyncio.gather(*health, *busy), timeout=60)
    return list(results[:CONCURRENT]), list(results[CONCURRENT:]), time.monotonic() - started


def test_a_thousand_concurrent_gets_do_not_time_out_healthz(server: MonitoringServer) -> None:
    healthz, busy, took = asyncio.run(_storm(server.port))
    assert healthz == [200] * CONCURRENT
    assert busy == [200] * len(busy)
    assert took < 30, f"{CONCURRENT} concurrent GETs took {took:.1f}s"
    # and the server still answers afterwards
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "query",
    ["/api/flows?since=99999999999d", "/api/stats?since=99999999999d", "/api/invoices?since=99999999999h",
     "/api/flows?since=0001-01-01T00:00:00%2B01:00"],
)  # fmt: skip
def test_since_overflow_is_a_bad_parameter(server: MonitoringServer, query: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}{query}", timeout=10)
    assert caught.value.code == 400
    assert b"bad_parameter" in caught.value.read()


def test_cli_since_overflow_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "flows", "--since", "99999999999d", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "too far back" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("toml", "warned"),
    [
        ("", []),
        ('[metrics]\nhost = "0.0.0.0"\n', ["metrics.host = '0.0.0.0'"]),
        ('[api]\nenabled = true\nhost = "0.0.0.0"\n', ["api.host = '0.0.0.0' without TLS"]),
        ('[api]\nenabled = true\nhost = "0.0.0.0"\ntrusted_proxies = ["10.0.0.1"]\n', []),
    ],
)
def test_check_config_warns_about_exposed_listeners(tmp_path: Path, toml: str, warned: list[str]) -> None:
    (tmp_path / "gateway.toml").write_text(toml)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(warned)
    for line, expected in zip(warnings, warned, strict=True):
        assert expected in line


def test_tls_key_without_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('[api]\ntls_key_file = "key.pem"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "tls_cert_file and tls_key_file go together" in result.stderr
