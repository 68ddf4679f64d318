"""Validation pool: worker processes, per-document timeout, crash isolation, recycling (issue 4 §3, §6)."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from gateway.model import Syntax
from gateway.validation.plan import ValidationConfig
from gateway.validation.pool import ValidationPool

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SMALL = CORPUS / "factur-x/tests/fixtures/xml/factur-x-extended.xml"
FX_EXTENDED = "urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def small_invoice() -> bytes:
    if not SMALL.is_file():
        pytest.skip(f"corpus file not found: {SMALL}")
    return SMALL.read_bytes()


@pytest.fixture(scope="module")
def slow_invoice(small_invoice: bytes) -> bytes:
    """The same EXTENDED invoice with 1200 more lines: its rule run takes over 5 s (~7-10 ms per line)."""
    root = etree.fromstring(small_invoice)
    line = root.find(f".//{{{RAM}}}IncludedSupplyChainTradeLineItem")
    parent = line.getparent()
    position = parent.index(line)
    for _ in range(1200):
        parent.insert(position + 1, copy.deepcopy(line))
    return etree.tostring(root)


@pytest.fixture(scope="module")
def pool() -> Iterator[ValidationPool]:
    config = ValidationConfig(workers=1, timeout_seconds=TIMEOUT, br_fr=False)
    with ValidationPool(config, None) as validation_pool:
        yield validation_pool


def test_pool_validates_and_reuses_its_worker(pool: ValidationPool, small_invoice: bytes) -> None:
    first = pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    assert first.outcome == "valid", first.summary_text()
    pids = pool.worker_pids()
    second = pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    assert [f.to_dict() for f in second.findings] == [f.to_dict() for f in first.findings]
    assert pool.worker_pids() == pids and len(pids) == 1


def test_timeout_rejects_only_that_document(
    pool: ValidationPool, small_invoice: bytes, slow_invoice: bytes
) -> None:
    pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")  # worker up, packs compiled
    old_pids = pool.worker_pids()
    started = time.monotonic()
    report = pool.validate(slow_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    elapsed = time.monotonic() - started
    assert report.outcome == "not_validated"
    assert report.causes == (f"validation: timed out after {TIMEOUT:g}s",)
    assert TIMEOUT <= elapsed < TIMEOUT + 5
    assert str(report.reason) == "REJ_SEMAN"
    for pid in old_pids:  # the stuck worker was killed, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    after = pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    assert after.outcome == "valid"
    assert pool.worker_pids() and pool.worker_pids() != old_pids


def test_killed_worker_rejects_only_that_document(
    pool: ValidationPool, small_invoice: bytes, slow_invoice: bytes
) -> None:
    pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    [victim] = pool.worker_pids()
    results = {}
    runner = threading.Thread(
        target=lambda: results.setdefault(
            "report", pool.validate(slow_invoice, Syntax.CII, FX_EXTENDED, "pdf")
        )
    )
    runner.start()
    time.sleep(0.5)  # the worker is now inside the (multi-second) rule run
    os.kill(victim, signal.SIGKILL)
    runner.join(30)
    assert not runner.is_alive()
    report = results["report"]
    assert report.outcome == "not_validated"
    assert report.causes == ("validation: validation worker crashed (killed by SIGKILL)",)
    after = pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    assert after.outcome == "valid"
    assert victim not in pool.worker_pids()


def test_workers_are_recycled_and_threads_share_the_pool(small_invoice: bytes) -> None:
    config = ValidationConfig(workers=2, max_tasks_per_worker=2, br_fr=False, xsd=False)
    ubl = (CORPUS / "en16931/ubl/examples/ubl-tc434-example1.xml").read_bytes()
    seen_pids: set[int] = set()
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        report = pool.validate(ubl, Syntax.UBL_INVOICE, None)
        with lock:
            outcomes.append(report.outcome)
            seen_pids.update(pool.worker_pids())

    with ValidationPool(config, None) as pool:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert outcomes == ["valid"] * 6
        assert len(pool.worker_pids()) <= 2
    # 6 documents, at most 2 per worker: at least 3 distinct worker processes were used
    assert len(seen_pids) >= 3
