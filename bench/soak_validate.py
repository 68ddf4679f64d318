"""Memory soak: many validations in ONE process with ValidationEngine directly (issue 4 §7).

Validates a rotating mix of UBL and CII invoices (tests/invoice_factory.py: 5-line and 40-line invoices of
both syntaxes, each with a different invoice number) and prints the process RSS (/proc/self/status VmRSS)
every `--every` validations, then the first/last figures and the growth. The daemon's pool recycles a
worker after `ValidationConfig.max_tasks_per_worker` documents; the growth per 1,000 printed here is what
that setting bounds.

Run: .venv/bin/python bench/soak_validate.py [--count 10000] [--every 1000] [--quick]
"""

from __future__ import annotations

import argparse
import time

from _common import machine_line, rss_kib, use_tests_helpers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000, help="validations to run (default 10000)")
    parser.add_argument("--every", type=int, default=1_000, help="print RSS every N validations")
    parser.add_argument("--quick", action="store_true", help="500 validations, RSS every 100")
    args = parser.parse_args()
    count, every = (500, 100) if args.quick else (args.count, args.every)

    use_tests_helpers()
    from gateway.model import Syntax
    from gateway.validation.engine import ValidationEngine
    from gateway.validation.plan import ValidationConfig
    from gateway.validation.rulepacks import RulePackRegistry

    from invoice_factory import make_cii, make_ubl

    print(f"# bench/soak_validate.py — {machine_line()}")
    config = ValidationConfig()
    engine = ValidationEngine(config, RulePackRegistry(None))
    variants = 50  # distinct documents per kind, so the run does not replay one string
    mix = []
    for i in range(variants):
        mix.append((Syntax.UBL_INVOICE, make_ubl(lines=5, number=f"SOAK-U5-{i}")))
        mix.append((Syntax.CII, make_cii(lines=5, number=f"SOAK-C5-{i}")))
        mix.append((Syntax.UBL_INVOICE, make_ubl(lines=40, number=f"SOAK-U40-{i}")))
        mix.append((Syntax.CII, make_cii(lines=40, number=f"SOAK-C40-{i}")))
    engine.validate(mix[0][1], mix[0][0], None)  # compile the packs before the baseline
    engine.validate(mix[1][1], mix[1][0], None)
    baseline = rss_kib()
    print(f"RSS after compiling the packs: {baseline / 1024:.1f} MiB")
    print(
        f"{'validations':>11}  {'RSS MiB':>8}  {'since start MiB':>15}  {'per 1000 MiB':>12}  {'ms/validation':>13}"
    )
    samples: list[tuple[int, int]] = []
    outcomes: dict[str, int] = {}
    started = last_time = time.perf_counter()
    last_rss = baseline
    for done in range(1, count + 1):
        syntax, xml = mix[done % len(mix)]
        report = engine.validate(xml, syntax, None)
        outcomes[str(report.outcome)] = outcomes.get(str(report.outcome), 0) + 1
        if done % every == 0 or done == count:
            rss = rss_kib()
            now = time.perf_counter()
            batch = done - (samples[-1][0] if samples else 0)
            samples.append((done, rss))
            print(
                f"{done:>11}  {rss / 1024:>8.1f}  {(rss - baseline) / 1024:>15.1f}  "
                f"{(rss - last_rss) / 1024 * 1000 / batch:>12.2f}  {(now - last_time) * 1000 / batch:>13.2f}",
                flush=True,
            )
            last_rss, last_time = rss, now
    elapsed = time.perf_counter() - started
    first, last = samples[0][1], samples[-1][1]
    span = samples[-1][0] - samples[0][0]
    print()
    print(f"validations: {count} in {elapsed:.0f} s ({count / elapsed:.1f}/s); outcomes {outcomes}")
    print(
        f"RSS baseline {baseline / 1024:.1f} MiB; first sample {first / 1024:.1f} MiB; last {last / 1024:.1f} MiB"
    )
    print(f"growth since baseline: {(last - baseline) / 1024:.1f} MiB", end="")
    if span:
        print(
            f"; first→last sample: {(last - first) / 1024:.1f} MiB = {(last - first) / span:.1f} KiB per validation"
        )
    else:
        print()
    print(f"ValidationConfig.max_tasks_per_worker default: {config.max_tasks_per_worker}")


if __name__ == "__main__":
    main()
