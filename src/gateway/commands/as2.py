"""`gateway as2 keygen`: an RSA key and a self-signed certificate for our AS2 station (first setups, tests).

Writes `<data dir>/as2/key.pem` and `<data dir>/as2/cert.pem` (or `--key` / `--cert`), mode 0600, and
refuses to overwrite existing files unless `--force`. Give `cert.pem` to your partners; point
`[as2] private_key` / `certificate` at the files (the defaults already do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli import add_data_dir


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    as2 = sub.add_parser("as2", help="AS2 tools")
    commands = as2.add_subparsers(dest="as2_command", required=True)
    keygen = commands.add_parser("keygen", help="make an RSA key and a self-signed certificate (0600 files)")
    add_data_dir(keygen)
    keygen.add_argument("--as2-id", default="flow-gateway", help="AS2 id written as the certificate's CN")
    keygen.add_argument("--key", type=Path, help="key file (default <data dir>/as2/key.pem)")
    keygen.add_argument("--cert", type=Path, help="certificate file (default <data dir>/as2/cert.pem)")
    keygen.add_argument("--days", type=int, default=3650, help="certificate validity in days (default 3650)")
    keygen.add_argument("--bits", type=int, default=3072, choices=(2048, 3072, 4096), help="RSA key size")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(func=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    from gateway.as2.keys import certificate_summary, make_key_pair, write_private

    root: Path = args.data_dir
    key_path: Path = args.key or root / "as2" / "key.pem"
    cert_path: Path = args.cert or root / "as2" / "cert.pem"
    existing = [p for p in (key_path, cert_path) if p.exists()]
    if existing and not args.force:
        print(f"refusing to overwrite {', '.join(map(str, existing))} (use --force)", file=sys.stderr)
        return 1
    if args.days < 1:
        print("--days must be at least 1", file=sys.stderr)
        return 2
    pair = make_key_pair(args.as2_id, days=args.days, bits=args.bits)
    write_private(key_path, pair.key_pem)
    write_private(cert_path, pair.cert_pem)
    print(f"key:         {key_path}")
    print(f"certificate: {cert_path} ({certificate_summary(pair.cert_pem)})")
    return 0
