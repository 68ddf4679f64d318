"""The recipient directory: CSV and AFNOR Directory Service JSON files, the store (SQLite and PostgreSQL),
the `gateway directory` commands, and the sample directory of config/ against the demo invoices."""

from __future__ import annotations

import argparse
import copy
import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select

from gateway import cli
from gateway.commands import directory as directory_cmd
from gateway.datadir import DataDir
from gateway.statemachine import FlowState
from gateway.store.db import InvoiceRecord, Store, new_flow_id
from gateway.store.directory import AcceptedInvoices, DirectoryStore, import_directory, upsert_entries
from gateway.store.models import AcceptedInvoiceKeyRow
from gateway.transforms.directory_file import (
    CSV_COLUMNS,
    DirectoryFileError,
    ParsedDirectory,
    parse_csv,
    parse_directory,
    parse_directory_json,
)
from gateway.transforms.identify import Identifier
from gateway.transforms.route import DEST_INC, DOUBLON, Recipient, Service, route_invoice, seller_key

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CSV = REPO / "config" / "directory.csv"
SAMPLE_JSON = REPO / "config" / "directory.json"
# ../shared beside the checkout (or beside a folder of worktrees)
SHARED = next(
    (p / "shared" for p in REPO.parents if (p / "shared" / "artefacts").is_dir()), REPO.parent / "shared"
)
SCHEMA_FILE = SHARED / "artefacts" / "france-rfe-1.4.0" / "api" / "directory-service-1.3.0.json"
HEADER = ",".join(CSV_COLUMNS)
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def row(**values: str) -> str:
    base = {
        "siret": "98765432400019", "siren": "987654324", "routing_code": "", "addressing_id": "",
        "name": "Commune", "active": "1", "service_code_required": "0", "engagement_required": "0",
        "services": "", "partner": "demo", "syntax": "same",
    }  # fmt: skip
    base.update(values)
    return ",".join(base[c] for c in CSV_COLUMNS)


def rejected_lines(parsed: ParsedDirectory) -> dict[int | None, str]:
    return {r.line: r.reason for r in parsed.rejected}


# -- CSV ---------------------------------------------------------------------------------------------------
def test_sample_csv() -> None:
    parsed = parse_csv(SAMPLE_CSV.read_bytes())
    assert parsed.rejected == []
    assert [n for n, _ in parsed.lines] == [2, 3, 4, 5, 6]
    commune = parsed.lines[0][1]
    assert (commune.siren, commune.siret, commune.addressing_id) == (
        "987654324",
        "98765432400019",
        "987654324",
    )
    assert commune.service_code_required and not commune.engagement_required and commune.active
    assert commune.services == (
        Service("SERV-01", "Service comptabilité", True),
        Service("SERV-02", "Ancien service travaux", False),
    )
    assert parsed.lines[1][1].routing_code == "SERV-01"
    assert parsed.lines[3][1].active is False
    seller = parsed.lines[4][1]
    assert (seller.siret, seller.siren, seller.syntax) == (None, "123456782", "ubl")


def test_csv_columns_in_any_order_extra_ignored_semicolons_and_bom() -> None:
    columns = list(reversed(CSV_COLUMNS)) + ["comment"]
    values = {"siret": "98765432400019", "siren": "", "name": "Ville; quai", "services": "A:Alpha:1",
              "partner": "p1", "syntax": "CII", "comment": "ignored", "active": "", "engagement_required": "true"}  # fmt: skip
    line = ";".join(f'"{values.get(c, "")}"' for c in columns)
    data = b"\xef\xbb\xbf" + (";".join(columns) + "\r\n" + line + "\r\n").encode()
    parsed = parse_csv(data)
    assert parsed.rejected == []
    r = parsed.recipients[0]
    assert (r.siren, r.siret, r.name, r.partner, r.syntax) == (
        "987654324",
        "98765432400019",
        "Ville; quai",
        "p1",
        "cii",
    )
    assert r.active and r.engagement_required and not r.service_code_required
    assert r.services == (Service("A", "Alpha", True),)


def test_csv_optional_either_flag() -> None:
    parsed = parse_csv(csv_bytes(row() + ",1", header=HEADER + ",service_or_engagement_required"))
    assert parsed.recipients[0].service_or_engagement_required


def test_csv_bad_lines_are_reported_with_their_line_numbers() -> None:
    data = csv_bytes(
        row(),  # 2 good
        row(siret="98765432400018"),  # 3 Luhn
        row(siret="73282932000074"),  # 4 SIRET of another SIREN
        row(siret="", siren="", name="nobody"),  # 5 no identifier
        row(siret="", routing_code="R1"),  # 6 routing code without SIRET
        row(active="yes please"),  # 7 flag
        row(siret="98765432400027", services="S1:Name"),  # 8 services format
        row(siret="98765432400027", services="S1:a:1;S1:b:0"),  # 9 service twice
        row(siret="98765432400027", syntax="pdf"),  # 10 syntax
        row(),  # 11 same key as line 2
        row(siret="98765432400027", partner="bad partner"),  # 12 partner id
        row(siret="98765432400027", addressing_id="a b"),  # 13 addressing charset
        "98765432400027,987654324",  # 14 too few fields
        row(siret="", siren="12345678"),  # 15 SIREN length
        row(siret="98765432400027", routing_code="R 1"),  # 16 routing code charset
        row(siret="98765432400027", addressing_id="987654324_A"),  # 17 good
        row(siret="98765432400035", addressing_id="987654324_A"),  # 18 address already on line 17
        row(siret="98765432400027", routing_code="R1", name="x" * 151),  # 19 name too long
        "",  # 20 blank: skipped silently
        row(siret="", siren="987654324", services="S1:Compta:1"),  # 21 good SIREN-level line
    )
    parsed = parse_csv(data)
    reasons = rejected_lines(parsed)
    assert [n for n, _ in parsed.lines] == [2, 17, 21]
    expected = {
        3: "Luhn", 4: "does not start with the SIREN", 5: "neither SIREN nor SIRET", 6: "without a SIRET",
        7: "active must be 1 or 0", 8: "not CODE:Name:1", 9: "listed twice", 10: "syntax 'pdf'",
        11: "same SIREN/SIRET/routing code as line 2", 12: "not a partner id", 13: "addressing identifier",
        14: "2 fields where the header has 11", 15: "not 9 digits", 16: "routing code 'R 1'",
        18: "already given on line 17", 19: "longer than 150",
    }  # fmt: skip
    assert sorted(reasons) == sorted(expected)
    for line, word in expected.items():
        assert word in reasons[line], (line, reasons[line])
    assert str(parsed.rejected[0]).startswith("line 3: SIRET 98765432400018 fails the Luhn check")


def test_csv_line_numbers_follow_multiline_fields() -> None:
    data = csv_bytes(row(name='"two\nlines"'), row(siret="98765432400018"))
    parsed = parse_csv(data)
    assert parsed.lines[0][0] == 2 and parsed.recipients[0].name == "two\nlines"
    assert rejected_lines(parsed).keys() == {4}


def test_csv_broken_quote_stops_with_its_line() -> None:
    parsed = parse_csv(csv_bytes(row(), '98765432400027,"unterminated'))
    assert [n for n, _ in parsed.lines] == [2]
    assert list(rejected_lines(parsed)) == [3]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"siret,siren,name\n", "lacks column(s) routing_code, addressing_id"),
        (csv_bytes(header=HEADER + ",name"), "name given twice"),
        (b"\xff\xfesiret", "not UTF-8"),
    ],
)
def test_csv_unreadable_file(data: bytes, message: str) -> None:
    with pytest.raises(DirectoryFileError, match=re.escape(message)):
        parse_csv(data)


def test_format_by_name_and_content() -> None:
    assert parse_directory(SAMPLE_CSV.read_bytes(), filename="x.txt").format == "csv"
    assert parse_directory(SAMPLE_JSON.read_bytes(), filename="x.txt").format == "json"
    assert parse_directory(b"[]", filename="d.json").format == "json"
    with pytest.raises(DirectoryFileError, match="apply to JSON"):
        parse_directory(SAMPLE_CSV.read_bytes(), filename="d.csv", partner="demo")


# -- JSON (AFNOR Directory Service 1.3.0) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def line_schema() -> jsonschema.Draft7Validator:
    """The directory-line search answer of the Directory Service OpenAPI file, as a JSON Schema."""
    if not SCHEMA_FILE.exists():
        pytest.skip(f"{SCHEMA_FILE} not found")
    spec = json.loads(SCHEMA_FILE.read_text())
    root = {
        "$ref": "#/components/schemas/directoryLineSearchPost200Response",
        "components": spec["components"],
    }
    return jsonschema.Draft7Validator(root)


def afnor_line(siret: str, *, routing: str | None = None, **extra: Any) -> dict[str, Any]:
    """A directory line as the Directory Service returns it (fields of directory-service-1.3.0.json)."""
    line: dict[str, Any] = {
        "platformType": "WK",
        "directoryLineStatus": "Enabled",
        "siren": siret[:9],
        "siret": siret,
    }
    if routing is None:
        line["facility"] = {
            "siret": siret, "siren": siret[:9], "name": f"Établissement {siret}", "facilityType": "P",
            "administrativeStatus": "A",
            "b2gAdditionalData": {"pm": False, "pmOnly": False, "managesPaymentStatus": True,
                                  "managesLegalCommitmentCode": False,
                                  "managesLegalCommitmentOrServiceCode": False, "serviceCodeStatus": False},
        }  # fmt: skip
        line["legalUnit"] = {"siren": siret[:9], "businessName": "Unité légale", "entityType": "Public",
                             "administrativeStatus": "A"}  # fmt: skip
    else:
        line["routingIdentifier"] = routing
        line["routingCode"] = {"routingIdentifier": routing, "routingIdentifierType": "0224",
                               "routingCodeName": f"Code {routing}", "managesLegalCommitment": False,
                               "administrativeStatus": "A"}  # fmt: skip
    line.update(extra)
    return line


def extract(*lines: dict[str, Any]) -> dict[str, Any]:
    return {"totalNumberOfResults": len(lines), "results": list(lines)}


def test_sample_json_validates_and_maps(line_schema: jsonschema.Draft7Validator) -> None:
    doc = json.loads(SAMPLE_JSON.read_text())
    assert list(line_schema.iter_errors(doc)) == []
    parsed = parse_directory_json(SAMPLE_JSON.read_bytes(), partner="demo")
    assert parsed.rejected == []
    by_key = {r.key: r for r in parsed.recipients}
    commune = by_key["987654324/98765432400019/"]
    assert (
        commune.addressing_id == "987654324" and commune.service_code_required and commune.partner == "demo"
    )
    assert commune.services == (
        Service("SERV-01", "Service comptabilité", True),
        Service("SERV-02", "Ancien service travaux", False),  # routing code closed (administrativeStatus C)
    )
    assert by_key["987654324/98765432400019/SERV-02"].active is False
    hospital = by_key["111222337/11122233700011/"]
    assert hospital.engagement_required and not hospital.service_code_required
    # the JSON lines start where the file says
    text = SAMPLE_JSON.read_text().splitlines()
    for number, _ in parsed.lines:
        assert number is not None and text[number - 1].strip() == "{"


def test_built_extract_validates_and_imports(line_schema: jsonschema.Draft7Validator) -> None:
    closed = afnor_line("55208131766522")
    closed["facility"]["administrativeStatus"] = "C"
    either = afnor_line("73282932000074", addressingIdentifier="732829320_COMPTA")
    either["facility"]["b2gAdditionalData"]["managesLegalCommitmentOrServiceCode"] = True
    doc = extract(
        afnor_line("98765432400019"),
        afnor_line("98765432400019", routing="R-1"),
        afnor_line("98765432400019", routing="R-2", addressingIdentifier="987654324_R2"),
        closed,
        either,
        {
            "siren": "987654324",
            "directoryLineStatus": "Enabled",
            "addressingIdentifier": "987654324",
            "legalUnit": {"siren": "987654324", "businessName": "Ville"},
        },  # fmt: skip
    )
    assert list(line_schema.iter_errors(doc)) == []
    parsed = parse_directory_json(json.dumps(doc, indent=2).encode(), partner="buyer", syntax="cii")
    assert parsed.rejected == []
    keys = [r.key for r in parsed.recipients]
    assert keys == [
        "987654324/98765432400019/", "987654324/98765432400019/R-1", "987654324/98765432400019/R-2",
        "552081317/55208131766522/", "732829320/73282932000074/", "987654324//",
    ]  # fmt: skip
    facility = parsed.recipients[0]
    assert [s.code for s in facility.services] == ["R-1", "R-2"] and facility.syntax == "cii"
    assert parsed.recipients[2].addressing_id == "987654324_R2" and parsed.recipients[2].name == "Code R-2"
    assert parsed.recipients[3].active is False
    assert parsed.recipients[4].service_or_engagement_required
    assert parsed.recipients[5].name == "Ville" and parsed.recipients[5].siret is None


@pytest.fixture(scope="module")
def search_schemas() -> dict[str, jsonschema.Draft7Validator]:
    if not SCHEMA_FILE.exists():
        pytest.skip(f"{SCHEMA_FILE} not found")
    spec = json.loads(SCHEMA_FILE.read_text())
    return {
        name: jsonschema.Draft7Validator(
            {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        )
        for name in (
            "sirenSearchPost200Response",
            "siretSearchPost200Response",
            "routingCodeSearchPost200Response",
        )
    }


def test_siren_siret_and_routing_code_search_answers(
    search_schemas: dict[str, jsonschema.Draft7Validator],
) -> None:
    """The other Directory Service search answers load too: their own fields sit at the top level."""
    sirens = extract(
        {
            "siren": "987654324",
            "businessName": "Commune de Test",
            "entityType": "Public",
            "administrativeStatus": "A",
        },
        {"siren": "552081317", "businessName": "Fermée", "entityType": "Public", "administrativeStatus": "C"},
    )
    facility = afnor_line("98765432400019")["facility"]
    facility["b2gAdditionalData"]["serviceCodeStatus"] = True
    facility["legalUnit"] = {"siren": "987654324", "businessName": "Commune de Test"}
    sirets = extract(facility)
    routing = {
        "routingIdentifier": "R-9", "siret": "98765432400019", "routingIdentifierType": "0224",
        "routingCodeName": "Marchés", "managesLegalCommitmentCode": True, "administrativeStatus": "A",
        "legalUnit": {"siren": "987654324"}, "facility": {"siret": "98765432400019", "siren": "987654324"},
    }  # fmt: skip
    routings = extract(routing)
    for name, doc in (
        ("sirenSearchPost200Response", sirens),
        ("siretSearchPost200Response", sirets),
        ("routingCodeSearchPost200Response", routings),
    ):
        assert list(search_schemas[name].iter_errors(doc)) == [], name
    both = parse_directory_json(json.dumps(sirens).encode(), partner="buyer")
    assert [(r.key, r.name, r.active) for r in both.recipients] == [
        ("987654324//", "Commune de Test", True),
        ("552081317//", "Fermée", False),
    ]
    one = parse_directory_json(json.dumps(sirets).encode()).recipients[0]
    assert (one.key, one.name, one.service_code_required) == (
        "987654324/98765432400019/",
        "Établissement 98765432400019",
        True,
    )
    code = parse_directory_json(json.dumps(routings).encode()).recipients[0]
    assert (code.key, code.name, code.engagement_required, code.active) == (
        "987654324/98765432400019/R-9", "Marchés", True, True)  # fmt: skip
    # one file may mix them: the facility gets its routing codes as services
    mixed = parse_directory_json(json.dumps(extract(facility, routing)).encode())
    assert mixed.recipients[0].services == (Service("R-9", "Marchés", True),)
    routing["administrativeStatus"] = "C"
    assert parse_directory_json(json.dumps(routings).encode()).recipients[0].active is False


def test_json_bad_entries_have_line_numbers(line_schema: jsonschema.Draft7Validator) -> None:
    bad_luhn = afnor_line("98765432400018")
    other_siren = afnor_line("98765432400027", facility={"siren": "732829320"})
    bad_flag = afnor_line("98765432400035")
    bad_flag["facility"]["b2gAdditionalData"]["serviceCodeStatus"] = "yes"
    bad_status = afnor_line("98765432400043", directoryLineStatus="Maybe")
    doc = extract(afnor_line("98765432400019"), bad_luhn, other_siren, bad_flag, bad_status, "not an object")
    # the schema agrees these entries are wrong (except the Luhn check and the SIREN disagreement, ours)
    assert len(list(line_schema.iter_errors(doc))) >= 3
    text = json.dumps(doc, indent=2)
    parsed = parse_directory_json(text.encode())
    starts = [i + 1 for i, t in enumerate(text.splitlines()) if t == "    {" or t.startswith('    "not')]
    assert [n for n, _ in parsed.lines] == [starts[0]]
    reasons = {r.where: (r.line, r.reason) for r in parsed.rejected}
    assert list(reasons) == [f"results[{i}]" for i in range(1, 6)]
    assert [line for line, _ in reasons.values()] == starts[1:]
    assert "Luhn" in reasons["results[1]"][1]
    assert "SIREN" in reasons["results[2]"][1] and "differ" in reasons["results[2]"][1]
    assert "serviceCodeStatus must be true or false" in reasons["results[3]"][1]
    assert "'Maybe' is not one of" in reasons["results[4]"][1]
    assert "must be an object" in reasons["results[5]"][1]
    assert str(parsed.rejected[0]).startswith(f"line {starts[1]} (results[1]): ")


def test_json_statuses_and_a_bare_list() -> None:
    lines = [
        afnor_line("98765432400019", directoryLineStatus="Disabled"),
        afnor_line("98765432400027", directoryLineStatus="Upcoming"),
        afnor_line("98765432400035"),
    ]
    lines[2]["legalUnit"]["administrativeStatus"] = "C"
    parsed = parse_directory_json(json.dumps(lines).encode())
    assert [r.active for r in parsed.recipients] == [False, False, False]
    assert [n for n, _ in parsed.lines] == [1, 1, 1]  # one line of JSON


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON"),
        (b'{"results": 3}', "expected a directory-line search answer"),
        (b'"x"', "expected"),
    ],
)
def test_json_unreadable(data: bytes, message: str) -> None:
    with pytest.raises(DirectoryFileError, match=message):
        parse_directory_json(data)


# -- store (SQLite and PostgreSQL) ------------------------------------------------------------------------------
@pytest.fixture
def store(store_url: str) -> Any:
    s = Store(store_url)
    s.migrate()
    yield s
    s.close()


def load(store: Store, data: bytes, *, replace: bool = False, name: str = "d.csv", **kw: Any) -> Any:
    with store.transaction() as conn:
        return import_directory(conn, parse_directory(data, filename=name, **kw), now=NOW, replace=replace)


def test_store_import_and_lookups(store: Store) -> None:
    report = load(store, SAMPLE_CSV.read_bytes())
    assert report.applied and report.rejected == [] and report.result.to_dict()["inserted"] == 5
    with store.reader() as conn:
        d = DirectoryStore(conn)
        commune = d.by_siret("98765432400019")
        assert commune is not None and commune.name == "Commune de Test" and commune.routing_code is None
        assert commune.services[1] == Service("SERV-02", "Ancien service travaux", False)
        routing = d.by_siret("98765432400019", "SERV-01")
        assert routing is not None and routing.routing_code == "SERV-01"
        assert d.by_siret("98765432400019", "NOPE") is None
        assert d.siret_known("98765432400019") and not d.siret_known("98765432400027")
        assert d.by_addressing_id("987654324") == commune
        seller = d.by_siren("123456782")
        assert seller is not None and seller.syntax == "ubl"
        assert d.by_siren("987654324") is None  # no SIREN-level line for the commune
        assert [r.key for r in d.find("987654324")] == [
            "987654324/98765432400019/", "987654324/98765432400019/SERV-01"]  # fmt: skip
        assert [r.key for r in d.find("SERV-01")] == ["987654324/98765432400019/SERV-01"]
        assert [r.key for r in d.find("111222337_ENG")] == ["111222337/11122233700011/"]
        assert len(d.all()) == d.count() == 5 and len(d.all(limit=2)) == 2
        assert d.all(partner="nobody") == []


def test_store_upsert_is_idempotent(store: Store) -> None:
    load(store, SAMPLE_CSV.read_bytes())
    again = load(store, SAMPLE_CSV.read_bytes())
    assert again.result.to_dict() == {"inserted": 0, "updated": 0, "unchanged": 5, "deleted": 0}
    changed = SAMPLE_CSV.read_text().replace("Syndicat fermé,0", "Syndicat rouvert,1").encode()
    third = load(store, changed)
    assert third.result.updated == ["555666775/55566677500013/"] and len(third.result.unchanged) == 4
    with store.reader() as conn:
        reopened = DirectoryStore(conn).by_siret("55566677500013")
    assert reopened is not None and reopened.active and reopened.name == "Syndicat rouvert"


def test_store_replace(store: Store) -> None:
    load(store, SAMPLE_CSV.read_bytes())
    only = csv_bytes(row(siret="98765432400019", addressing_id="987654324", name="Commune v2"))
    report = load(store, only, replace=True)
    assert report.result.to_dict() == {"inserted": 0, "updated": 1, "unchanged": 0, "deleted": 4}
    with store.reader() as conn:
        assert [r.name for r in DirectoryStore(conn).all()] == ["Commune v2"]
    # a rejected line under --replace changes nothing at all
    refused = load(store, csv_bytes(row(siret="73282932000074", siren=""), row(siret="1")), replace=True)
    assert not refused.applied and [r.line for r in refused.rejected] == [3]
    with store.reader() as conn:
        assert [r.name for r in DirectoryStore(conn).all()] == ["Commune v2"]
    # an empty file under --replace empties the directory
    assert load(store, csv_bytes(), replace=True).result.to_dict()["deleted"] == 1


def test_store_refuses_an_address_held_by_another_line(store: Store) -> None:
    load(store, SAMPLE_CSV.read_bytes())
    clash = csv_bytes(row(siret="98765432400027", addressing_id="987654324"), row(siret="98765432400035"))
    report = load(store, clash)
    assert [
        (r.line, "belongs to directory line 987654324/98765432400019/" in r.reason) for r in report.rejected
    ] == [(2, True)]
    assert report.result.inserted == ["987654324/98765432400035/"]
    # the same address moving with --replace is fine: the old holder goes away
    assert load(store, clash, replace=True).rejected == []


def test_store_json_then_csv(store: Store) -> None:
    load(store, SAMPLE_JSON.read_bytes(), name="d.json", partner="demo")
    report = load(store, SAMPLE_CSV.read_bytes())
    counts = report.result.to_dict()
    # shared lines: the commune facility, its SERV-01 routing line and the hospital; SERV-02 stays
    assert (counts["inserted"], counts["unchanged"] + counts["updated"], counts["deleted"]) == (2, 3, 0)
    with store.reader() as conn:
        assert DirectoryStore(conn).count() == 6


def test_upsert_keeps_services_and_flags(store: Store) -> None:
    r = Recipient(
        siren="987654324", siret="98765432400019", routing_code="R/1-_x", addressing_id="a+b.c-d_e",
        name="Ñame", active=False, service_code_required=True, engagement_required=True,
        service_or_engagement_required=True, services=(Service("S:1", "n:a:m", False),), partner="p", syntax="facturx",
    )  # fmt: skip
    with store.transaction() as conn:
        upsert_entries(conn, [r], source="csv", now=NOW)
    with store.reader() as conn:
        assert DirectoryStore(conn).by_siret("98765432400019", "R/1-_x") == r


def _flow_with_invoices(store: Store, invoices: list[tuple[dict[str, Any], str]]) -> str:
    flow_id = new_flow_id()
    store.record_received(
        flow_id=flow_id, partner="demo", source="folder", filename="f.xml", size=1, sha256=flow_id.ljust(64, "0")[:64],
        received_at=datetime.now(UTC), worker="t",
    )  # fmt: skip
    flow = store.claim_next("w", 60)
    assert flow is not None and flow.id == flow_id
    records = [
        InvoiceRecord(i + 1, f"i{i}", "ubl-invoice", None, s, status, None, None, None)
        for i, (s, status) in enumerate(invoices)
    ]
    assert store.advance(
        flow, FlowState.RECEIVED, FlowState.VALIDATED, worker="w", stage="validate", invoices=records
    )
    return flow_id


def test_accepted_invoices(store: Store) -> None:
    seller = {"seller_siren": "123456782", "seller_siret": "12345678200010"}
    first = _flow_with_invoices(
        store,
        [
            ({"number": "F-1", "issue_date": "2025-03-14", **seller}, "accepted"),
            ({"number": "F-2", "issue_date": "2025-03-14", **seller}, "rejected"),
        ],
    )
    key = seller_key(seller)
    assert key == "siren:123456782"
    with store.reader() as conn:
        assert not AcceptedInvoices(conn).already_accepted(key, "F-1", "2025")  # rows alone: not by default
        acc = AcceptedInvoices(conn, statuses=("accepted",))
        assert acc.already_accepted(key, "F-1", "2025")
        assert not acc.already_accepted(key, "F-1", "2026")
        assert not acc.already_accepted("siren:732829320", "F-1", "2025")
        assert not acc.already_accepted(key, "F-2", "2025")  # rejected ones do not count
        assert not AcceptedInvoices(conn, exclude_flow=first, statuses=("accepted",)).already_accepted(
            key, "F-1", "2025"
        )
        assert AcceptedInvoices(conn, statuses=("rejected",)).already_accepted(key, "F-2", "2025")
        assert acc.remember_summary(
            {"number": "F-3", "issue_date": "2025-12-31", "seller_siret": "12345678200028"}
        )
        assert acc.already_accepted(key, "F-3", "2025")  # same legal unit, earlier in the batch


def test_record_keeps_one_invoice_per_seller_number_year(store: Store) -> None:
    twin = {"number": "F-9", "issue_date": "2025-06-01", "seller_siren": "123456782"}
    key = ("siren:123456782", "F-9", "2025")
    with store.transaction() as conn:
        first = AcceptedInvoices(conn, exclude_flow="flow-A")
        assert not first.already_accepted(*key)
        assert first.record(twin)
        assert first.already_accepted(*key)  # a twin later in the same batch
        assert first.record(twin)  # recording again under the same flow is harmless
        assert first.record({"number": "F-9"})  # nothing to key on: not recorded, not refused
    with store.transaction() as conn:
        assert AcceptedInvoices(conn).already_accepted(*key)
        assert not AcceptedInvoices(conn, exclude_flow="flow-A").already_accepted(*key)  # a replayed flow
        other = AcceptedInvoices(conn, exclude_flow="flow-B")
        assert other.already_accepted(*key) and other.record(twin) is False
    with store.transaction() as conn:
        rolled = AcceptedInvoices(conn, exclude_flow="flow-C")
        assert rolled.record({**twin, "number": "F-10"})
        conn.rollback()  # the routing transaction failed: its keys go with it
    with store.reader() as conn:
        assert not AcceptedInvoices(conn).already_accepted("siren:123456782", "F-10", "2025")


def test_twins_validated_before_routing_do_not_block_each_other(store: Store) -> None:
    """Invoice rows say "accepted" from validation on; routing decides which twin is the duplicate."""
    twin = {"number": "W-1", "issue_date": "2025-06-01", "seller_siren": "123456782"}
    flow_a = _flow_with_invoices(store, [(twin, "accepted")])
    flow_b = _flow_with_invoices(store, [(twin, "accepted")])
    key = ("siren:123456782", "W-1", "2025")
    with store.transaction() as conn:
        routing_a = AcceptedInvoices(conn, exclude_flow=flow_a)
        assert not routing_a.already_accepted(*key) and routing_a.record(twin)
    with store.transaction() as conn:
        assert AcceptedInvoices(conn, exclude_flow=flow_b).already_accepted(*key)


def test_concurrent_twins_only_one_is_accepted(store: Store) -> None:
    """Two flows carrying the same invoice, routed at the same time: the second waits for the first
    commit (SQLite write lock, PostgreSQL unique index) and is refused."""
    twin = {"number": "T-1", "issue_date": "2025-06-01", "seller_siren": "123456782"}
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            with store.transaction() as conn:
                outcome["recorded"] = AcceptedInvoices(conn, exclude_flow="flow-B").record(twin)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=second)
    with store.transaction() as conn:
        assert AcceptedInvoices(conn, exclude_flow="flow-A").record(twin)
        thread.start()
        if not store.is_sqlite:  # hold the commit until the second insert waits on the unique index
            deadline = time.monotonic() + 30
            with store.engine.connect() as probe:
                while not probe.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar():
                    assert time.monotonic() < deadline and thread.is_alive(), outcome
                    time.sleep(0.01)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert outcome == {"recorded": False}
    with store.reader() as conn:
        holders = conn.execute(select(AcceptedInvoiceKeyRow.flow_id)).scalars().all()
    assert holders == ["flow-A"]


# -- the sample directory routes the demo invoices ---------------------------------------------------------------
def _demo_summaries() -> list[tuple[str, dict[str, Any]]]:
    from gateway.samples import demo_flows

    out = []
    identifier = Identifier()
    for name, data in demo_flows():
        if not name.endswith((".xml", ".txt")) or name in ("demo-empty.xml", "demo-not-an-invoice.txt"):
            continue
        for doc in identifier.identify(data, name).invoices:
            out.append((f"{name}:{doc.item}", doc.summary.to_dict()))
    return out


@pytest.mark.parametrize("sample", [SAMPLE_CSV, SAMPLE_JSON], ids=["csv", "json"])
def test_sample_directory_routes_every_demo_invoice(store: Store, sample: Path) -> None:
    load(store, sample.read_bytes(), name=sample.name, partner="demo" if sample.suffix == ".json" else None)
    summaries = _demo_summaries()
    assert len(summaries) >= 6
    matched = set()
    with store.reader() as conn:
        accepted = AcceptedInvoices(conn)
        for item, summary in summaries:
            decision = route_invoice(summary, DirectoryStore(conn), accepted)
            assert decision.routed, (item, decision)
            assert decision.recipient is not None and decision.recipient.partner == "demo"
            assert decision.recipient.siret == "98765432400019"
            matched.add(decision.matched_by)
            accepted.remember_summary(summary)
        # the flat batch carries 0225 electronic addresses, the XML files SIRETs
        assert matched == {"electronic_address", "siret"}
        # sending the first one again is a duplicate
        decision = route_invoice(summaries[0][1], DirectoryStore(conn), accepted)
        assert decision.reason_code == DOUBLON


def test_unknown_buyer_against_the_sample(store: Store) -> None:
    from gateway.samples import make_ubl

    load(store, SAMPLE_CSV.read_bytes())
    doc = Identifier().identify(make_ubl(buyer_siret="73282932000074"), "x.xml").invoices[0]
    with store.reader() as conn:
        decision = route_invoice(doc.summary.to_dict(), DirectoryStore(conn), AcceptedInvoices(conn))
    assert decision.reason_code == DEST_INC and "73282932000074" in (decision.message or "")


# -- CLI -------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    if "gateway.commands.directory" in cli.COMMAND_MODULES:
        return cli.build_parser()
    parser = argparse.ArgumentParser(prog="gateway")
    directory_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = _parser().parse_args(list(argv))
    code = int(args.func(args) or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def data_dir(tmp_path: Path, store_url: str) -> Path:
    dd = DataDir(tmp_path / "data")
    assert dd.write_default_config()
    text = dd.config_file.read_text()
    text, count = re.subn(r'(?m)^url = ""', f'url = "{store_url}"', text)
    assert count == 1
    dd.config_file.write_text(text)
    store = Store(store_url)
    store.migrate()  # as `gateway db upgrade` does; the directory commands only check the schema
    store.close()
    return dd.root


def test_cli_import_show_list(capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    d = str(data_dir)
    code, out, err = run(capsys, "directory", "import", str(SAMPLE_CSV), "--data-dir", d)
    assert code == 0, err
    assert out == "directory.csv (csv): imported 5 new, 0 updated, 0 unchanged, 0 deleted; 0 rejected\n"
    code, out, _ = run(capsys, "directory", "import", str(SAMPLE_CSV), "--data-dir", d)
    assert code == 0 and "imported 0 new, 0 updated, 5 unchanged" in out

    code, out, _ = run(capsys, "directory", "show", "98765432400019", "--data-dir", d)
    assert code == 0
    assert "987654324/98765432400019/\n" in out and "987654324/98765432400019/SERV-01\n" in out
    assert "SERV-01 (Service comptabilité)" in out and "SERV-02 (Ancien service travaux, inactive)" in out
    assert re.search(r"service code required \(BT-10\):\s+yes", out)
    for key in ("987654324", "SERV-01", "111222337_ENG", "123456782"):
        code, out, _ = run(capsys, "directory", "show", key, "--data-dir", d, "--json")
        assert code == 0 and json.loads(out), key
    code, _, err = run(capsys, "directory", "show", "73282932000074", "--data-dir", d)
    assert code == 1 and "not in the directory" in err

    code, out, _ = run(capsys, "directory", "list", "--data-dir", d)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("SIREN") and lines[-1] == "5 line(s)"
    assert any(line.startswith("111222337 11122233700011") and " -E- " in line for line in lines)
    code, out, _ = run(capsys, "directory", "list", "--data-dir", d, "--json")
    assert [r["siren"] for r in json.loads(out)] == [
        "111222337",
        "123456782",
        "555666775",
        "987654324",
        "987654324",
    ]

    # bad lines: reported with their numbers, the good ones loaded, exit code 1
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes(row(siret="98765432400027", name="Annexe"), row(siret="98765432400018")))
    code, out, _ = run(capsys, "directory", "import", str(bad), "--data-dir", d)
    assert code == 1
    assert "imported 1 new" in out and "1 rejected" in out
    assert "  rejected line 3: SIRET 98765432400018 fails the Luhn check" in out

    # --replace with a rejected line: nothing changes; --dry-run: nothing changes either
    code, out, _ = run(capsys, "directory", "import", str(bad), "--replace", "--data-dir", d)
    assert code == 1 and "NOT imported" in out
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes(row(siret="98765432400027", name="Annexe", partner="elsewhere")))
    code, out, _ = run(capsys, "directory", "import", str(good), "--replace", "--dry-run", "--data-dir", d)
    assert code == 0 and "would import 0 new, 1 updated, 0 unchanged, 5 deleted" in out
    assert "partner(s) not in the configuration: elsewhere" in out
    code, out, _ = run(capsys, "directory", "list", "--data-dir", d)
    assert out.splitlines()[-1] == "6 line(s)"
    code, out, _ = run(capsys, "directory", "import", str(good), "--replace", "--data-dir", d, "--json")
    report = json.loads(out)
    assert code == 0 and (report["updated"], report["deleted"], report["applied"]) == (1, 5, True)
    code, out, _ = run(capsys, "directory", "list", "--data-dir", d)
    assert out.splitlines()[-1] == "1 line(s)"


def test_cli_import_json_and_unreadable_files(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    d = str(data_dir)
    code, out, err = run(
        capsys,
        "directory",
        "import",
        str(SAMPLE_JSON),
        "--partner",
        "demo",
        "--syntax",
        "cii",
        "--data-dir",
        d,
    )
    assert code == 0, err
    assert out.startswith("directory.json (json): imported 4 new")
    code, out, _ = run(capsys, "directory", "show", "987654324", "--data-dir", d, "--json")
    shown = json.loads(out)
    assert {r["partner"] for r in shown} == {"demo"} and {r["syntax"] for r in shown} == {"cii"}
    assert shown[0]["services"][0] == {"code": "SERV-01", "name": "Service comptabilité", "active": True}

    broken = tmp_path / "broken.json"
    broken.write_text("{")
    code, _, err = run(capsys, "directory", "import", str(broken), "--data-dir", d)
    assert code == 2 and "not JSON" in err
    code, _, err = run(capsys, "directory", "import", str(tmp_path / "missing.csv"), "--data-dir", d)
    assert code == 2 and "missing.csv" in err
    wrong = copy.deepcopy(json.loads(SAMPLE_JSON.read_text()))
    wrong["results"][0]["siret"] = "98765432400018"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(wrong, indent=2))
    code, out, _ = run(capsys, "directory", "import", str(bad), "--data-dir", d, "--json")
    report = json.loads(out)
    assert code == 1 and report["rejected"][0]["where"] == "results[0]" and report["rejected"][0]["line"] == 4
