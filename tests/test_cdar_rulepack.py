"""The France_RFE release installs as rule pack `br-fr-cdv` (folder, zip, `gateway rules install`), and
`gateway validate` judges a CDAR message with it; fuzzed status CSVs only ever fail as IdentifyError."""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.commands import rules as rules_command
from gateway.commands import validate as validate_command
from gateway.errors import IdentifyError
from gateway.transforms.lifecycle_in import parse_status_csv
from gateway.validation.rulepacks import RulePackError, RulePackRegistry, sha256_file

from lifecycle_support import CDAR_CORPUS, require_france_rfe


def _run(module: object, args: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command"))  # type: ignore[attr-defined]
    namespace = parser.parse_args(args)
    out = io.StringIO()
    return namespace.func(namespace, out=out), out.getvalue()


def test_install_folder_and_zip(tmp_path: Path) -> None:
    release = require_france_rfe()
    registry = RulePackRegistry(tmp_path / "rules")
    pack = registry.install(release)
    assert (pack.ref, pack.kind, pack.license) == ("br-fr-cdv@1.4.0", "installed", "LICENSE")
    assert set(pack.layers) == {"xsd-cdar", "schematron-cdar"}
    rel = pack.layers["schematron-cdar"]
    assert pack.sha256_of(rel) == sha256_file(release / rel)
    assert "BR-FR-CDV-Schematron-CDAR.sch" in pack.version_source
    with pytest.raises(RulePackError, match="already installed"):
        registry.install(release)

    archive = tmp_path / "France_RFE-1.4.0.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(release.rglob("*")):
            if path.is_file():
                zf.write(path, "France_RFE-1.4.0/" + path.relative_to(release).as_posix())
    other = RulePackRegistry(tmp_path / "rules2").install(archive)
    assert other.ref == "br-fr-cdv@1.4.0"


def test_a_release_without_its_version_is_refused(tmp_path: Path) -> None:
    release = require_france_rfe()
    copy = tmp_path / "copy"
    shutil.copytree(release / "cdar", copy / "cdar")
    (copy / "cdar" / "schematron" / "BR-FR-CDV-Schematron-CDAR.sch").write_text("<schema/>")
    xslt = copy / "cdar" / "xslt" / "BR-FR-CDV-Schematron-CDAR.xslt"
    xslt.write_text(re.sub(r"CDAR_V[0-9.]+", "CDAR", xslt.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(RulePackError, match="cannot tell the release"):
        RulePackRegistry(tmp_path / "rules").install(copy)


def test_rules_command_and_validate_command(tmp_path: Path) -> None:
    release = require_france_rfe()
    rules_dir = str(tmp_path / "rules")
    code, out = _run(rules_command, ["rules", "install", str(release), "--rules-dir", rules_dir])
    assert code == 0 and "br-fr-cdv@1.4.0" in out
    code, out = _run(rules_command, ["rules", "list", "--rules-dir", rules_dir])
    assert re.search(r"^br-fr-cdv\s+1\.4\.0\s+installed", out, re.M)
    code, out = _run(rules_command, ["rules", "show", "br-fr-cdv", "--rules-dir", rules_dir, "--json"])
    assert set(json.loads(out)["layers"]) == {"xsd-cdar", "schematron-cdar"}
    if not CDAR_CORPUS.is_dir():
        pytest.skip("CDAR corpus not found")
    data_dir = tmp_path / "data"
    (data_dir / "rules").mkdir(parents=True)
    RulePackRegistry(data_dir / "rules").install(release)
    good = CDAR_CORPUS / "UC1_F202500003_05-CDV-205_Approuvee.xml"
    old = CDAR_CORPUS / "UC1_F202500003_06-CDV-211_Paiement_transmis.xml"  # fires BR-FR-CDV-16 under 1.4.0
    code, out = _run(
        validate_command, ["validate", str(good), str(old), "--format", "json", "--data-dir", str(data_dir)]
    )
    results = json.loads(out)
    flat = json.dumps(results)
    assert code == 1, flat[:2000]
    assert "BR-FR-CDV-16_MDT-124-2" in flat and "cdar" in flat


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='F-0123456789;"\n\r abcTX_Z:+', max_size=60), max_size=6))
def test_fuzzed_status_csv_fails_only_as_identify_error(rows: list[str]) -> None:
    data = (
        "invoice_number;seller_siret;status_code;date;reason_code;reason_text\n" + "\n".join(rows)
    ).encode()
    try:
        lines = parse_status_csv(data)
    except IdentifyError:
        return
    for line in lines:
        assert line.error is not None or (line.code.isdigit() and line.at is not None and line.invoice_number)
