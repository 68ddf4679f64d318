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

from gateway.errors import TransientError
from gateway.model import Syntax
from gateway.validation.plan import ValidationConfig
from gateway.validation.pool import ValidationBug, ValidationPool, ValidationTimeout, ValidationUnavailable

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


def test_timeout_is_retried_once_then_the_documents(
    pool: ValidationPool, small_invoice: bytes, slow_invoice: bytes
) -> None:
    pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")  # worker up, packs compiled
    old_pids = pool.worker_pids()
    started = time.monotonic()
    with pytest.raises(ValidationTimeout, match=f"timed out after {TIMEOUT:g}s") as first:
        pool.validate(slow_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    elapsed = time.monotonic() - started
    assert isinstance(first.value, TransientError)  # the machine may have been busy: retried
    assert TIMEOUT <= elapsed < TIMEOUT + 5
    for pid in old_pids:  # the stuck worker was killed, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    after = pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    assert after.outcome == "valid"
    assert pool.worker_pids() and pool.worker_pids() != old_pids
    # the same document times out again: now it is the document's (rejected with the cause)
    report = pool.validate(slow_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    assert report.outcome == "not_validated"
    assert report.causes == (f"validation: timed out after {TIMEOUT:g}s (twice)",)
    assert str(report.reason) == "REJ_SEMAN"


def test_killed_worker_is_transient_for_that_document(
    pool: ValidationPool, small_invoice: bytes, slow_invoice: bytes
) -> None:
    pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")
    [victim] = pool.worker_pids()
    results = {}

    def run() -> None:
        try:
            pool.validate(slow_invoice, Syntax.CII, FX_EXTENDED, "pdf")
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(0.5)  # the worker is now inside the (multi-second) rule run
    os.kill(victim, signal.SIGKILL)
    runner.join(30)
    assert not runner.is_alive()
    error = results["error"]  # a crash is the machine's, never a rejection sent to the partner
    assert isinstance(error, ValidationUnavailable) and isinstance(error, TransientError)
    assert str(error) == "validation worker crashed (killed by SIGKILL)"
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


def test_a_worker_that_cannot_start_is_transient(
    small_invoice: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ValidationConfig(workers=1, br_fr=False)
    with ValidationPool(config, None) as pool:
        pool._args = ("not a config",)  # the process starts, then dies at once (bad arguments)
        with pytest.raises(ValidationUnavailable, match=r"validation worker crashed \(exit code 1\)"):
            pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")

        def no_more_descriptors(*_args: object, **_kw: object) -> None:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(pool._ctx, "Pipe", no_more_descriptors)  # the process cannot be created
        with pytest.raises(ValidationUnavailable, match="could not start a validation worker: OSError"):
            pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf")


def test_a_bug_in_the_worker_is_neither_transient_nor_the_documents(small_invoice: bytes) -> None:
    config = ValidationConfig(workers=1, br_fr=False)
    with ValidationPool(config, None) as pool:
        # an unknown syntax makes our own code raise (ValueError in Syntax(...)) inside the worker
        with pytest.raises(ValidationBug, match="ValueError") as caught:
            pool.validate(small_invoice, "no-such-syntax", FX_EXTENDED, "pdf")  # type: ignore[arg-type]
        assert not isinstance(caught.value, TransientError)
        assert pool.validate(small_invoice, Syntax.CII, FX_EXTENDED, "pdf").outcome == "valid"
