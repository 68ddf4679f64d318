"""Throughput of the whole daemon against one process validating the same files alone.

A fresh data dir, the real `gateway run` (default settings but for the scan interval), N distinct
invoices dropped at once into a partner's in/ folder; the run waits for every acknowledgement and
reports invoices/s, drop→ack latency percentiles, the daemon's CPU per flow (its own process, and its
validation processes apart) and peak RSS. The reference, in the same invocation: `gateway validate
--workers 0` on the same files, one single-threaded process with the same artefacts.

    .venv/bin/python bench/throughput.py                      # 300 small UBL invoices (the issue's case)
    .venv/bin/python bench/throughput.py --mix mixed -n 200   # UBL, CII, Factur-X PDF, flat batches, 5–2,000 lines
    .venv/bin/python bench/throughput.py --store postgresql   # the daemon on PostgreSQL (GATEWAY_TEST_PG_URL)
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _common import REPO, machine_line

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ACK_SUFFIX = ".ack.xml"


@dataclass
class Document:
    name: str
    data: bytes
    kind: str
    lines: int


@dataclass
class DaemonRun:
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    daemon_cpu_s: float = 0.0
    validation_cpu_s: float = 0.0
    peak_rss_kib: int = 0
    missing: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def make_documents(mix: str, count: int) -> list[Document]:
    from gateway.samples import make_cii, make_flat, make_ubl

    docs: list[Document] = []
    for n in range(count):
        number = f"BENCH-{os.getpid()}-{n:06d}"
        if mix == "ubl-small":
            docs.append(Document(f"{number}.xml", make_ubl(lines=5, number=number), "ubl", 5))
            continue
        kind = ("ubl", "cii", "facturx", "flat")[n % 4]
        lines = (5, 5, 5, 100, 100, 2000)[(n // 4) % 6]
        if kind == "ubl":
            docs.append(Document(f"{number}.xml", make_ubl(lines=lines, number=number), kind, lines))
        elif kind == "cii":
            docs.append(Document(f"{number}.xml", make_cii(lines=lines, number=number), kind, lines))
        elif kind == "facturx":
            pdf = facturx_pdf(make_cii(lines=min(lines, 100), number=number))
            docs.append(Document(f"{number}.pdf", pdf, kind, min(lines, 100)))
        else:
            flat = make_flat(invoices=[{"number": f"{number}-{i}"} for i in range(3)], lines=5)
            docs.append(Document(f"{number}.txt", flat, kind, 15))
    return docs


def facturx_pdf(cii: bytes) -> bytes:
    from facturx import generate_from_binary
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return bytes(generate_from_binary(buffer.getvalue(), cii, flavor="factur-x", level="en16931"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def rss_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_daemon(docs: list[Document], workdir: Path, store_url: str, timeout: float) -> DaemonRun:
    data = workdir / "data"
    data.mkdir()
    port = free_port()
    store = f'url = "{store_url}"' if store_url else ""
    (data / "gateway.toml").write_text(
        f"[intake]\nscan_interval_seconds = 0.5\nmin_age_seconds = 0.2\n\n[store]\n{store}\n\n"
        f'[metrics]\nport = {port}\n\n[sftp]\nenabled = false\n\n[partners.bench]\nname = "Bench"\n'
    )
    stderr = (workdir / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--data-dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO,
    )  # fmt: skip
    result = DaemonRun()
    try:
        wait_ready(port, proc, 120)
        inbox, outbox = data / "partners" / "bench" / "in", data / "partners" / "bench" / "out"
        staging = workdir / "staging"
        staging.mkdir()
        for doc in docs:
            (staging / doc.name).write_bytes(doc.data)
        pool = children_of(proc.pid)
        cpu_before = cpu_seconds(proc.pid)
        pool_before = {pid: cpu_seconds(pid) for pid in pool}
        dropped: dict[str, float] = {}
        started = time.perf_counter()
        for doc in docs:
            os.rename(staging / doc.name, inbox / doc.name)  # same filesystem: complete at once
            dropped[doc.name] = time.perf_counter()
        answered: dict[str, float] = {}
        deadline = started + timeout
        while len(answered) < len(docs) and time.perf_counter() < deadline:
            for entry in os.scandir(outbox):
                if entry.name.endswith(ACK_SUFFIX):
                    original = entry.name[: -len(ACK_SUFFIX)].rsplit(".", 1)[0]
                    answered.setdefault(original, time.perf_counter())
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon died; see {workdir / 'daemon.log'}")
            time.sleep(0.02)
        result.wall_s = max(answered.values(), default=time.perf_counter()) - started
        result.latencies_s = [answered[name] - dropped[name] for name in answered]
        result.missing = len(docs) - len(answered)
        result.daemon_cpu_s = cpu_seconds(proc.pid) - cpu_before
        pool_now = children_of(proc.pid)
        result.validation_cpu_s = sum(cpu_seconds(pid) - pool_before.get(pid, 0.0) for pid in pool_now)
        result.peak_rss_kib = rss_hwm_kib(proc.pid) + sum(rss_hwm_kib(pid) for pid in pool_now)
        for ack in outbox.glob(f"*{ACK_SUFFIX}"):
            status = ack_status(ack.read_bytes())
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return result


def ack_status(ack: bytes) -> str:
    from lxml import etree

    return str(etree.fromstring(ack).findtext("{urn:flow-gateway:ack:1}FlowStatus") or "?")


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("the daemon exited before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the daemon was not ready in time")


def run_reference(docs: list[Document], workdir: Path) -> tuple[float, float]:
    """(wall s, CPU s) of `gateway validate --workers 0` over the same files in one process."""
    folder = workdir / "reference"
    folder.mkdir()
    paths = []
    for doc in docs:
        (folder / doc.name).write_bytes(doc.data)
        paths.append(str(folder / doc.name))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "validate", "--workers", "0", "--format", "json",
         "--data-dir", str(workdir / "none"), *paths],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--count", type=int, default=300, help="files dropped at once (default 300)")
    parser.add_argument("--mix", choices=("ubl-small", "mixed"), default="ubl-small")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every ack")
    args = parser.parse_args()

    store_url = ""
    if args.store == "postgresql":
        store_url = os.environ.get("GATEWAY_TEST_PG_URL", "")
        if not store_url:
            parser.error("--store postgresql needs GATEWAY_TEST_PG_URL (a database the bench may fill)")
    docs = make_documents(args.mix, args.count)
    flows = len(docs)
    print(f"# bench/throughput.py — {machine_line()}")
    print(f"# {flows} files ({args.mix}), store {args.store}")
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        ref_wall, ref_cpu = run_reference(docs, workdir)
        daemon = run_daemon(docs, workdir, store_url, args.timeout)
    rate = (flows - daemon.missing) / daemon.wall_s if daemon.wall_s else 0.0
    print(f"{'':<34}{'daemon':>12}{'one process':>14}{'ratio':>9}")
    print(
        f"{'wall time for all files (s)':<34}{daemon.wall_s:>12.2f}{ref_wall:>14.2f}{daemon.wall_s / ref_wall:>9.2f}"
    )
    print(f"{'files/s':<34}{rate:>12.1f}{flows / ref_wall:>14.1f}")
    daemon_ms = daemon.daemon_cpu_s / flows * 1000
    validation_ms = daemon.validation_cpu_s / flows * 1000
    print(f"{'CPU per file, daemon process (ms)':<34}{daemon_ms:>12.1f}")
    print(f"{'CPU per file, validation procs (ms)':<34}{validation_ms:>12.1f}{ref_cpu / flows * 1000:>14.1f}")
    if validation_ms:
        print(f"{'daemon CPU / validation CPU':<34}{daemon_ms / validation_ms:>12.2f}")
    lat = daemon.latencies_s
    print(
        f"drop→ack latency (s): p50 {percentile(lat, 50):.2f}  p95 {percentile(lat, 95):.2f}  "
        f"p99 {percentile(lat, 99):.2f}  mean {statistics.fmean(lat) if lat else float('nan'):.2f}"
    )
    print("acknowledgements: " + ", ".join(f"{k} {v}" for k, v in sorted(daemon.statuses.items())))
    print(f"peak RSS, daemon + validation processes: {daemon.peak_rss_kib / 1024:.0f} MiB")
    if daemon.missing:
        print(f"WARNING: {daemon.missing} file(s) got no acknowledgement within {args.timeout:.0f} s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
