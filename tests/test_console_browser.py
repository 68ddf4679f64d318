"""An operator in a real browser (Debian's chromium, headless, driven by Playwright) against the real daemon:
sign in, filter flows, open a rejected invoice and read its rule id, replay a quarantined flow and watch it
get acknowledged. The run saves the README's screenshots (docs/console-flows.png, docs/console-invoice.png).

The daemon (tests/daemon_harness.py) processes the files. When the API application is part of the gateway
(`gateway.api.app`, which mounts the console under /console), the daemon serves the console on its `[api]`
listener and the browser talks to the daemon alone; otherwise uvicorn serves `console_app` in this process
over the daemon's own database and data dir.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from gateway.console import console_app
from gateway.datadir import DataDir
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.telemetry.metrics import Metrics

from console_harness import PASSWORD, ConsoleServer, break_totals, crash_twice
from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_cii, make_ubl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
DOCS = Path(__file__).resolve().parents[1] / "docs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _daemon_serves_console() -> bool:
    return (
        importlib.util.find_spec("gateway.api") is not None
        and importlib.util.find_spec("gateway.api.app") is not None
    )


@contextlib.contextmanager
def _console_url(daemon: Daemon, api_port: int | None, store: Store, data_dir: DataDir) -> Iterator[str]:
    """The console's base URL: the daemon's API listener, or a server of our own over its data."""
    if api_port is not None:
        url = f"http://127.0.0.1:{api_port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{url}/console/login", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 60, "the console on the daemon's API listener", daemon)
        yield url
        return
    with ConsoleServer(console_app(store, data_dir.load_config(), data_dir)) as server:
        yield server.url


def _ack_status(daemon: Daemon, name: str, partner: str) -> object:
    acks = daemon.acks_for(name, partner)
    try:
        return read_ack(acks[0])["status"] if len(acks) == 1 else None
    except (OSError, etree.XMLSyntaxError):
        return None


def _flow_states(daemon: Daemon) -> dict[str, str]:
    return {name: state for _, name, state in daemon.flows()}


def test_an_operator_signs_in_filters_reads_a_rule_and_replays(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")

    root = tmp_path / "data"
    api_port = _free_port() if _daemon_serves_console() else None
    daemon = Daemon(root, extra=f"\n[api]\nenabled = true\nport = {api_port}\n" if api_port else "")
    data_dir = DataDir(root)
    config = data_dir.load_config()
    data_dir.prepare(config)
    store = Store(data_dir.database_url(config))
    store.migrate()
    added = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "operators", "add", "alice", "--data-dir", str(root)],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    # a poison flow: two workers took it and died; the daemon's first take quarantines it
    intake = Intake(
        store, BlobStore(data_dir.blobs, data_dir.tmp), data_dir.claims, 10_000_000, "t", Metrics()
    )
    poison = intake.take_bytes(
        "acme", make_ubl(lines=1, number="F-2026-0999"), "poison.xml", "folder"
    ).flow_id
    crash_twice(store, poison)

    drops = {
        ("acme", "ACME-2026-11-0001.xml"): make_ubl(lines=3, number="F-2026-1001"),
        ("acme", "ACME-2026-11-0002.xml"): break_totals(make_ubl(lines=2, number="F-2026-1002")),
        ("acme", "ACME-2026-11-0003.xml"): make_cii(lines=2, number="F-2026-1003"),
        ("demo", "scan-0042.pdf"): b"%PDF-1.4 this is a scanned letter, not an invoice",
        ("demo", "empty.xml"): b"",
        ("demo", "demo-invoice-17.xml"): make_ubl(lines=1, number="D-17"),
    }
    with daemon as d:
        d.start()
        for (partner, name), data in drops.items():
            d.drop(name, data, partner)
        wait_for(lambda: all(d.acks_for(n, p) for p, n in drops), 120, "an ack for every drop", d)
        wait_for(lambda: _flow_states(d).get("poison.xml") == "QUARANTINED", 60, "the poison quarantined", d)

        with _console_url(d, api_port, store, data_dir) as base_url, sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 860}, locale="en-GB")
                page = context.new_page()
                page.set_default_timeout(20_000)
                page.goto(f"{base_url}/console/flows")
                assert "/console/login" in page.url  # nothing is shown before sign-in
                page.fill("input[name=name]", "alice")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url("**/console/flows")
                rows = page.locator("#flows tbody tr.flow-row")
                assert rows.count() == len(drops) + 1
                assert page.inner_text("#backlog-quarantined") == "1"
                DOCS.mkdir(exist_ok=True)
                page.screenshot(path=str(DOCS / "console-flows.png"), full_page=True)

                # filter: acme's rejected flows
                page.select_option("select[name=partner]", "acme")
                page.select_option("select[name=state]", "REJECTED")
                page.click("#flow-filters button[type=submit]")
                page.wait_for_url("**state=REJECTED**")
                assert rows.count() == 1
                assert "ACME-2026-11-0002.xml" in rows.first.inner_text()
                assert rows.first.get_attribute("data-state") == "REJECTED"

                # the rejected invoice and its rule
                page.click("#flows tbody tr.flow-row a")
                page.click("#flow-invoices a")
                page.wait_for_url("**/console/invoices/*")
                assert page.inner_text("#invoice-number") == "F-2026-1002"
                rules = page.locator("#findings td.rule-id").all_inner_texts()
                assert "BR-CO-16" in rules
                xpath = page.locator("#findings tr", has_text="BR-CO-16").locator("td.xpath").inner_text()
                assert xpath.startswith("/") and "Invoice" in xpath
                page.screenshot(path=str(DOCS / "console-invoice.png"), full_page=True)

                # a second tab keeps the flows page open: its backlog count follows live (htmx)
                watcher = context.new_page()
                watcher.goto(f"{base_url}/console/flows")
                assert watcher.inner_text("#backlog-quarantined") == "1"

                # replay the quarantined flow; the daemon takes it again and acknowledges it
                page.goto(f"{base_url}/console/flows?state=QUARANTINED")
                assert rows.count() == 1
                page.click("#flows tbody tr.flow-row a")
                page.wait_for_url(f"**/console/flows/{poison}")
                page.click("#replay")
                page.wait_for_url("**done=replayed")
                assert "Replayed" in page.inner_text("#notice")
                wait_for(
                    lambda: _flow_states(d).get("poison.xml") == "ACKNOWLEDGED",
                    60,
                    "the replay acknowledged",
                    d,
                )
                # the new acknowledgement replaces the quarantine's under the same name (sent by the outbox)
                wait_for(
                    lambda: _ack_status(d, "poison.xml", "acme") == "Ok", 60, "the new acknowledgement", d
                )
                page.reload()
                assert page.locator("h1 .badge").inner_text() == "Acknowledged"
                timeline = page.inner_text("#timeline")
                assert "operator:alice" in timeline and timeline.count("Acknowledged") == 1
                assert "Ok" in page.inner_text("#ack") and "IN_INTEGRE" in page.inner_text("#ack")
                with page.expect_download() as download:
                    page.click("#download-ack")
                assert download.value.suggested_filename.startswith("poison.xml.")
                # (expect polls from Playwright's own world: the console's CSP forbids evaluating strings)
                sync_api.expect(watcher.locator("#backlog-quarantined")).to_have_text("0", timeout=20_000)
                assert watcher.url.endswith("/console/flows")  # updated in place, no reload
            finally:
                browser.close()
        assert d.stop() == 0
    assert len(d.acks_for("poison.xml", "acme")) == 1  # the replay rewrote the same acknowledgement
    store.close()
