"""Benchmark: uploads through the gateway's embedded SFTP server vs OpenSSH's sshd + internal-sftp.

    python bench/sftp.py [--small 300] [--small-kb 20] [--big-mb 100] [--repeat 3]

The pattern of issue 19: OpenSSH's `sftp` client in batch mode (`sftp -b`, one `put` after the other,
each waiting for its close to be answered), 300 x 20 KB files in one session, then one 100 MB file.
Servers, all on loopback ports, driven by the same client, interleaved round by round so a noisy
neighbour hurts them alike:

* `openssh internal-sftp` — sshd + internal-sftp, plain `put`: nothing is fsynced (the reference);
* `openssh put -f` — the same server, `put -f` (the client asks for fsync@openssh.com before the close):
  the file's data is durable when the close is answered (its directory entry is not);
* `gateway (fsync, default)` — the gateway's SFTP server wired to a real intake (SQLite store, blob
  store, claims) exactly as the daemon wires it: the close is answered once the file is fsynced and
  held as a durable intake claim (data and directory entries fsynced; a claim always becomes exactly
  one flow, crash or not);
* `gateway (no fsync)` — `fsync_uploads = false` (what internal-sftp does; the claim is still made).

The pipeline workers do not run (they would validate the files: another benchmark's business); every
upload is checked to become a flow. Ratios are computed per round (same round, same load) and their
median is printed with the best times; each server's connection set-up (an `sftp -b` with one `pwd`)
is measured in the same round, and a second ratio leaves it out. The load average is printed before
and after. sshd is started by this script from its own config in a temporary folder (127.0.0.1 only,
a fresh host key, public-key login for the current user only, `ForceCommand internal-sftp`) and
stopped at the end. Needs /usr/sbin/sshd (`apt-get install openssh-server`) and /usr/bin/sftp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hashlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import structlog
from sqlalchemy import func, select

from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.inbound.sftp_server import SftpPartner, SftpServer
from gateway.runtime.intake import Intake
from gateway.store.blobs import BlobStore
from gateway.store.db import Store
from gateway.store.models import FlowRow
from gateway.telemetry.metrics import Metrics

SSHD = "/usr/sbin/sshd"
SERVERS = ("openssh internal-sftp", "openssh put -f", "gateway (fsync, default)", "gateway (no fsync)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def openssh_server(work: Path, authorized_key: str) -> Iterator[tuple[int, Path]]:
    """sshd + internal-sftp on a loopback port; yields (port, the folder uploads land in)."""
    if not Path(SSHD).exists():
        raise SystemExit(f"{SSHD} missing: apt-get install openssh-server")
    root = work / "openssh-root"
    (root / "in").mkdir(parents=True)
    host_key = work / "sshd_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    (work / "authorized_keys").write_text(authorized_key)
    user = getpass.getuser()
    port = free_port()
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {work / 'sshd.pid'}",
                f"AuthorizedKeysFile {work / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "AllowTcpForwarding no",
                "AllowAgentForwarding no",
                "X11Forwarding no",
                "PermitTTY no",
                f"ForceCommand internal-sftp -d {root}",
                f"Subsystem sftp internal-sftp -d {root}",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    with (work / "sshd.log").open("wb") as log:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            wait_listening(port)
            yield port, root
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass
class GatewayDoor:
    port: int
    intake: Intake
    store: Store


@contextlib.contextmanager
def gateway_server(work: Path, authorized_key: str, fsync: bool) -> Iterator[GatewayDoor]:
    """The gateway's SftpServer + a real Intake (SQLite store, blobs, claims), as the daemon wires them."""
    root = work / f"gateway-{'fsync' if fsync else 'nofsync'}-{time.monotonic_ns()}"
    spool = root / "spool"
    for folder in (spool / "blobs", spool / "tmp", spool / "claim"):
        folder.mkdir(parents=True)
    store = Store(f"sqlite:///{root / 'gateway.db'}")
    store.migrate()
    blobs = BlobStore(spool / "blobs", spool / "tmp")
    intake = Intake(store, blobs, spool / "claim", 1 << 30, "bench", Metrics())
    auth = SftpPartnerAuth(authorized_keys=[authorized_key])
    server = SftpServer(
        SftpServerConfig(port=0, fsync_uploads=fsync),
        {"bench": SftpPartner("bench", root / "partners" / "bench", auth)},
        work / "gateway_host_key",
        lambda _partner, _path: None,
        metrics=None,
        logger=_quiet_logger(),
        intake=intake,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
    try:
        yield GatewayDoor(server.port, intake, store)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        intake.wait_recorded(60)
        store.close()


def flow_count(store: Store) -> int:
    with store.reader() as conn:
        return int(conn.execute(select(func.count()).select_from(FlowRow)).scalar_one())


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _quiet_logger() -> object:
    import structlog

    return structlog.wrap_logger(None, processors=[_drop])


def _drop(_logger: object, _name: str, _event: dict) -> dict:
    import structlog

    raise structlog.DropEvent


def run_sftp_batch(port: int, key: Path, user: str, commands: list[str], cwd: Path) -> float:
    batch = cwd / "batch.txt"
    batch.write_text("\n".join(commands) + "\n")
    argv = [
        "sftp", "-F", "/dev/null", "-b", str(batch), "-i", str(key), "-P", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", f"{user}@127.0.0.1",
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"sftp failed on port {port}: {result.stderr.strip()}")
    return elapsed


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, asyncssh {asyncssh.__version__}, {ssh_version}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=300, help="number of small files (default 300)")
    parser.add_argument("--small-kb", type=int, default=20, help="size of each small file in KB (default 20)")
    parser.add_argument("--big-mb", type=int, default=100, help="size of the big file in MB (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--no-fsync-row", action="store_true", help="skip the gateway (no fsync) server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if shutil.which("sftp") is None:
        raise SystemExit("the OpenSSH sftp client is needed (apt-get install openssh-client)")
    servers = [label for label in SERVERS if not (args.no_fsync_row and "no fsync" in label)]
    structlog.configure(processors=[_drop])  # the intake logs every flow: not what is measured here

    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="bench-sftp-"))
    times: dict[tuple[str, str], list[float]] = {
        (label, key): [] for label in servers for key in ("setup", "small", "big")
    }
    try:
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = work / "client_ed25519"
        key_path.write_bytes(client_key.export_private_key())
        key_path.chmod(0o600)
        public_line = client_key.export_public_key().decode()

        local = work / "local"
        local.mkdir()
        small_names = [f"inv-{i:05d}.xml" for i in range(args.small)]
        big = local / "big.bin"
        with big.open("wb") as fh:
            for _ in range(args.big_mb):
                fh.write(os.urandom(1 << 20))
        big_digest = sha256(big)

        with openssh_server(work, public_line) as (ssh_port, ssh_root):
            for _ in range(args.repeat):
                for name in small_names:  # new contents each round: no duplicate flows
                    (local / name).write_bytes(os.urandom(args.small_kb * 1024))
                for label in servers:
                    run_round(label, args, times, work, public_line, key_path, local, small_names,
                              big_digest, ssh_port, ssh_root)  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(args, servers, times, load_before)
    return 0


def run_round(
    label: str,
    args: argparse.Namespace,
    times: dict[tuple[str, str], list[float]],
    work: Path,
    public_line: str,
    key_path: Path,
    local: Path,
    small_names: list[str],
    big_digest: str,
    ssh_port: int,
    ssh_root: Path,
) -> None:
    flag = "-f " if label == "openssh put -f" else ""
    puts = [f"put {flag}{name} in/{name}" for name in small_names]
    big_put = [f"put {flag}big.bin in/big.bin"]
    if label.startswith("openssh"):
        user = getpass.getuser()
        for leftover in (ssh_root / "in").iterdir():
            leftover.unlink()
        times[(label, "setup")].append(run_sftp_batch(ssh_port, key_path, user, ["pwd"], local))
        times[(label, "small")].append(run_sftp_batch(ssh_port, key_path, user, puts, local))
        times[(label, "big")].append(run_sftp_batch(ssh_port, key_path, user, big_put, local))
        if sha256(ssh_root / "in" / "big.bin") != big_digest:
            raise RuntimeError(f"{label}: the big file arrived corrupted")
        return
    with gateway_server(work, public_line, fsync="no fsync" not in label) as door:
        times[(label, "setup")].append(run_sftp_batch(door.port, key_path, "bench", ["pwd"], local))
        times[(label, "small")].append(run_sftp_batch(door.port, key_path, "bench", puts, local))
        times[(label, "big")].append(run_sftp_batch(door.port, key_path, "bench", big_put, local))
        if not door.intake.wait_recorded(120):
            raise RuntimeError(f"{label}: uploads not recorded within 120 s")
        flows = flow_count(door.store)
        if flows != args.small + 1:
            raise RuntimeError(f"{label}: {flows} flows, {args.small + 1} expected")


def report(
    args: argparse.Namespace, servers: list[str], times: dict[tuple[str, str], list[float]], load_before: str
) -> None:
    print(f"SFTP upload benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(f"load average before: {load_before}, after: {load_average()}; {args.repeat} rounds")
    print("client: OpenSSH sftp -b, one put after the other (one session per scenario, set-up included)\n")
    scenarios = {
        "small": (f"{args.small} x {args.small_kb} KB", args.small),
        "big": (f"1 x {args.big_mb} MB", 1),
    }
    print(
        f"{'scenario':<16} {'server':<26} {'best s':>7} {'files/s':>8} {'MB/s':>7}  "
        f"{'vs openssh: median (rounds)':<34} {'without set-up'}"
    )
    for key, (scenario, files) in scenarios.items():
        size = args.small * args.small_kb * 1024 if key == "small" else args.big_mb << 20
        reference = times[("openssh internal-sftp", key)]
        ref_setup = times[("openssh internal-sftp", "setup")]
        for label in servers:
            mine, setup = times[(label, key)], times[(label, "setup")]
            ratios = sorted(ref / t for ref, t in zip(reference, mine, strict=True))
            net = sorted(
                (ref - rs) / max(t - st, 1e-3)
                for ref, rs, t, st in zip(reference, ref_setup, mine, setup, strict=True)
            )
            best = min(mine)
            rounds = "(" + " ".join(f"{r:.2f}" for r in ratios) + ")"
            print(
                f"{scenario:<16} {label:<26} {best:>7.2f} {files / best:>8.1f} {size / 1e6 / best:>7.1f}  "
                f"{statistics.median(ratios):>5.2f}x {rounds:<27} {statistics.median(net):>5.2f}x "
                "(" + " ".join(f"{r:.2f}" for r in net) + ")"
            )
    setups = ", ".join(f"{label} {statistics.median(times[(label, 'setup')]):.2f} s" for label in servers)
    print(f"\nconnection set-up alone (sftp -b with one pwd), median: {setups}")
    print(
        "'vs openssh' = throughput / plain OpenSSH internal-sftp throughput in the same round (1.00x = same);\n"
        "'without set-up' subtracts each server's own connection set-up time measured in the same round."
    )


if __name__ == "__main__":
    sys.exit(main())
