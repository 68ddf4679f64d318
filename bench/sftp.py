"""Benchmark: uploads through the gateway's embedded SFTP server vs OpenSSH's sshd + internal-sftp.

    python bench/sftp.py [--small 500] [--small-kb 5] [--big-mb 100] [--repeat 1]

Both servers run on loopback ports in the same run and are driven by the same client, OpenSSH's `sftp`
in batch mode (a C client, so the client is not the bottleneck): many small files in one session, then
one big file. The gateway runs with its default configuration (fsync of every upload before the close
is acknowledged) and once more with `fsync_uploads = false`, which is what internal-sftp does.

sshd is started by this script from its own config in a temporary folder: 127.0.0.1 only, a fresh host
key, public-key login for the current user only (root: `PermitRootLogin prohibit-password`),
`ForceCommand internal-sftp`, no forwarding, no TTY. It is stopped at the end. Needs /usr/sbin/sshd
(`apt-get install openssh-server`) and /usr/bin/sftp.
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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from gateway.inbound.sftp_config import SftpPartnerAuth, SftpServerConfig
from gateway.inbound.sftp_server import SftpPartner, SftpServer

SSHD = "/usr/sbin/sshd"


@dataclass
class Result:
    scenario: str
    server: str
    seconds: float
    files: int
    total_bytes: int

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.total_bytes / 1e6 / self.seconds


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


@contextlib.contextmanager
def gateway_server(work: Path, authorized_key: str, fsync: bool) -> Iterator[tuple[int, Path, list[Path]]]:
    """The gateway's SftpServer in a background event loop; yields (port, partner root, announced files)."""
    root = work / f"gateway-root-{'fsync' if fsync else 'nofsync'}"
    announced: list[Path] = []
    server = SftpServer(
        SftpServerConfig(port=0, fsync_uploads=fsync),
        {"bench": SftpPartner("bench", root, SftpPartnerAuth(authorized_keys=[authorized_key]))},
        work / "gateway_host_key",
        lambda _partner, path: announced.append(path),
        metrics=None,
        logger=_quiet_logger(),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
    try:
        yield server.port, root, announced
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


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
    parser.add_argument("--small", type=int, default=500, help="number of small files (default 500)")
    parser.add_argument("--small-kb", type=int, default=5, help="size of each small file in KB (default 5)")
    parser.add_argument("--big-mb", type=int, default=100, help="size of the big file in MB (default 100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if shutil.which("sftp") is None:
        raise SystemExit("the OpenSSH sftp client is needed (apt-get install openssh-client)")

    work = Path(tempfile.mkdtemp(prefix="bench-sftp-"))
    try:
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = work / "client_ed25519"
        key_path.write_bytes(client_key.export_private_key())
        key_path.chmod(0o600)
        public_line = client_key.export_public_key().decode()

        local = work / "local"
        local.mkdir()
        small_names = [f"inv-{i:05d}.xml" for i in range(args.small)]
        for name in small_names:
            (local / name).write_bytes(os.urandom(args.small_kb * 1024))
        big = local / "big.bin"
        with big.open("wb") as fh:
            for _ in range(args.big_mb):
                fh.write(os.urandom(1 << 20))
        big_digest = sha256(big)
        small_bytes = args.small * args.small_kb * 1024

        results: list[Result] = []
        with contextlib.ExitStack() as stack:
            ssh_port, ssh_root = stack.enter_context(openssh_server(work, public_line))
            servers = [("openssh internal-sftp", ssh_port, ssh_root, getpass.getuser(), None)]
            for fsync in (True, False):
                port, root, announced = stack.enter_context(gateway_server(work, public_line, fsync))
                label = "gateway (fsync, default)" if fsync else "gateway (no fsync)"
                servers.append((label, port, root, "bench", announced))

            # Rounds interleave the servers so a noisy neighbour hurts them alike; the best time is kept.
            best = {(label, scenario): float("inf") for label, *_ in servers for scenario in ("small", "big")}
            puts = [f"put {name} in/{name}" for name in small_names]
            for _ in range(args.repeat):
                for label, port, root, user, announced in servers:
                    for leftover in (root / "in").iterdir():
                        leftover.unlink()
                    if announced is not None:
                        announced.clear()
                    elapsed = run_sftp_batch(port, key_path, user, puts, local)
                    best[(label, "small")] = min(best[(label, "small")], elapsed)
                    elapsed = run_sftp_batch(port, key_path, user, ["put big.bin in/big.bin"], local)
                    best[(label, "big")] = min(best[(label, "big")], elapsed)
                    if sha256(root / "in" / "big.bin") != big_digest:
                        raise RuntimeError(f"{label}: the big file arrived corrupted")
                    if announced is not None and len(announced) != args.small + 1:
                        raise RuntimeError(
                            f"{label}: {len(announced)} uploads announced, {args.small + 1} expected"
                        )
            for label, *_ in servers:
                small_scenario = f"{args.small} x {args.small_kb} KB"
                results.append(Result(small_scenario, label, best[(label, "small")], args.small, small_bytes))
                results.append(
                    Result(f"1 x {args.big_mb} MB", label, best[(label, "big")], 1, args.big_mb << 20)
                )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"SFTP upload benchmark, {time.strftime('%Y-%m-%d')}, {machine()}")
    print("client: OpenSSH sftp -b (one session per scenario, connection set-up included)\n")
    print(f"{'scenario':<16} {'server':<26} {'seconds':>8} {'files/s':>9} {'MB/s':>8} {'vs openssh':>11}")
    baseline = {r.scenario: r for r in results if r.server.startswith("openssh")}
    for result in results:
        ratio = baseline[result.scenario].seconds / result.seconds
        print(
            f"{result.scenario:<16} {result.server:<26} {result.seconds:>8.2f} {result.files_per_s:>9.1f} "
            f"{result.mb_per_s:>8.1f} {ratio:>10.2f}x"
        )
    print("\n'vs openssh' = gateway throughput / OpenSSH throughput (1.00x = same speed).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
