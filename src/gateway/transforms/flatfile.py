"""Legacy flat files read through a declarative layout (layouts/cpp-flat-v1.toml), converted to UBL 2.1.

Each invoice (F, its N notes, L*, T) becomes an intermediate XML built from the layout's field names, then UBL
through xslt/flat-to-ubl.xsl. Records whose role is not structural (e.g. notes) belong to the open invoice,
after the record types their `after` list allows. Errors in the file's structure (header, trailer, record order,
encoding) reject the whole flow (IdentifyError); errors in one invoice's fields reject that invoice only. Every
message names the line number and the field. docs/flat-file-layout.md describes the layout.
"""

from __future__ import annotations

import codecs
import csv
import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any

from lxml import etree

from gateway.errors import IdentifyError
from gateway.resources import resource_path
from gateway.transforms.xslt import Stylesheets

DEFAULT_LAYOUT = "cpp-flat-v1"
UTF8_BOM = b"\xef\xbb\xbf"
_DECIMAL_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")
_SIRET_RE = re.compile(r"^\d{14}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_INTEGER_RE = re.compile(r"^\d+$")
_CENT = Decimal("0.01")
_NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
_NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


class FieldError(Exception):
    """One field of one record is wrong (the message names line and field)."""


@dataclass(frozen=True)
class FlatInvoice:
    """One invoice of a flat batch: UBL bytes, or the error that rejects it."""

    index: int  # 1-based position in the batch
    line: int  # line number of its F record
    ubl: bytes = b""
    error: str | None = None


@dataclass(frozen=True)
class _Record:
    line: int
    kind: str
    fields: list[str]


def looks_like_flat(data: bytes) -> bool:
    body = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    return body.startswith(b"H;")


class Layout:
    """A record layout declared as data."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.separator: str = spec.get("separator", ";")
        self.quote: str = spec.get("quote", '"')
        self.encodings: list[str] = spec["encodings"]
        self.records: dict[str, dict[str, Any]] = spec["records"]

    @classmethod
    def load(cls, name: str = DEFAULT_LAYOUT) -> Layout:
        with open(resource_path("layouts", f"{name}.toml"), "rb") as fh:
            return cls(tomllib.load(fh))

    def kind_of_role(self, role: str) -> str:
        for kind, record in self.records.items():
            if record["role"] == role:
                return kind
        raise KeyError(role)

    def codec_for(self, declared: str) -> str | None:
        """The Python codec of a declared encoding when the layout allows it."""
        try:
            wanted = codecs.lookup(declared).name
        except LookupError:
            return None
        allowed = {codecs.lookup(e).name for e in self.encodings}
        return wanted if wanted in allowed else None

    def split(self, text: str) -> list[str]:
        return next(csv.reader([text], delimiter=self.separator, quotechar=self.quote, strict=True), [])

    def check_record(self, record: _Record) -> dict[str, str]:
        """Validate a record's fields against the layout; return {field name: value}."""
        spec = self.records[record.kind]
        label = spec.get("label", record.kind)
        fields = spec["fields"]
        last = max(f["position"] for f in fields)
        if len(record.fields) > last:
            raise FieldError(
                f"line {record.line}: {label} record ({record.kind}) has {len(record.fields)} fields, "
                f"at most {last} expected (a value containing '{self.separator}' must be quoted with "
                f"{self.quote})"
            )
        values: dict[str, str] = {}
        for field in fields:
            pos = field["position"]
            raw = record.fields[pos - 1].strip() if pos <= len(record.fields) else ""
            if not raw:
                if field.get("required"):
                    raise FieldError(f"{self._where(record, field)}: missing required value")
                continue
            values[field["name"]] = self._check_value(field, raw, self._where(record, field))
        by_name = {f["name"]: f for f in fields}
        for field in fields:  # `requires` and `default` once every value is known
            name, needed = field["name"], field.get("requires")
            if needed is not None and needed not in values:
                if name in values:
                    other = by_name[needed]
                    raise FieldError(
                        f"{self._where(record, field)}: given without '{other['label']}' "
                        f"({record.kind} position {other['position']})"
                    )
                continue
            if name not in values and "default" in field:
                values[name] = field["default"]
        return values

    @staticmethod
    def _where(record: _Record, field: dict[str, Any]) -> str:
        return f"line {record.line}, field '{field['label']}' ({record.kind} position {field['position']})"

    def _check_value(self, field: dict[str, Any], raw: str, where: str) -> str:
        kind = field["type"]
        pattern = field.get("pattern")
        if pattern is not None and not re.fullmatch(pattern, raw):
            hint = field.get("hint")
            raise FieldError(
                f"{where}: '{raw}' is not {hint}" if hint else f"{where}: '{raw}' does not match {pattern}"
            )
        if kind == "const" and raw != field["value"]:
            raise FieldError(f"{where}: '{raw}' should be '{field['value']}'")
        if kind == "code" and raw not in field["values"]:
            raise FieldError(f"{where}: '{raw}' is not one of {', '.join(field['values'])}")
        if kind == "date":
            try:
                date.fromisoformat(raw)
            except ValueError:
                raise FieldError(f"{where}: '{raw}' is not a date YYYY-MM-DD") from None
            if not re.match(r"^\d{4}-\d{2}-\d{2}$", raw):
                raise FieldError(f"{where}: '{raw}' is not a date YYYY-MM-DD")
        if kind == "datetime":
            try:
                datetime.fromisoformat(raw)
            except ValueError:
                raise FieldError(f"{where}: '{raw}' is not an ISO 8601 timestamp") from None
        if kind == "decimal" and not _DECIMAL_RE.match(raw):
            raise FieldError(f"{where}: '{raw}' is not a decimal number with '.' as separator")
        if kind == "integer" and not _INTEGER_RE.match(raw):
            raise FieldError(f"{where}: '{raw}' is not a whole number")
        if kind == "siret" and not _SIRET_RE.match(raw):
            raise FieldError(f"{where}: '{raw}' is not a SIRET (14 digits)")
        if kind == "currency" and not _CURRENCY_RE.match(raw):
            raise FieldError(f"{where}: '{raw}' is not an ISO 4217 currency code")
        if kind == "encoding" and self.codec_for(raw) is None:
            raise FieldError(f"{where}: encoding '{raw}' is not one of {', '.join(self.encodings)}")
        return raw


def _records(layout: Layout, text: str) -> list[_Record]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = layout.split(line)
        except csv.Error as exc:
            raise IdentifyError(f"flat file line {number}: {exc}") from None
        kind = fields[0].strip() if fields else ""
        if kind not in layout.records:
            raise IdentifyError(f"flat file line {number}: unknown record type '{kind[:20]}'")
        records.append(_Record(number, kind, fields))
    return records


def _decode(layout: Layout, data: bytes) -> str:
    body = data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data
    first = body.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
    header_spec = layout.records[layout.kind_of_role("header")]
    try:
        header = _Record(1, first.split(layout.separator, 1)[0], layout.split(first))
        values = layout.check_record(header)
    except csv.Error as exc:
        raise IdentifyError(f"flat file line 1: {exc}") from None
    except FieldError as exc:
        raise IdentifyError(f"flat file {exc}") from None
    encoding_field = next(f["name"] for f in header_spec["fields"] if f["type"] == "encoding")
    codec = layout.codec_for(values[encoding_field])
    assert codec is not None  # checked by check_record
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise IdentifyError(f"flat file line {line}: bytes are not valid {values[encoding_field]}") from None


def _vat_breakdown(lines: list[dict[str, str]]) -> list[tuple[str, str, Decimal, Decimal]]:
    groups: dict[tuple[str, Decimal], Decimal] = {}
    for line in lines:
        key = (line["vat_category"], Decimal(line["vat_rate"]))
        groups[key] = groups.get(key, Decimal(0)) + Decimal(line["line_net"])
    out = []
    for (category, rate), taxable in groups.items():
        amount = (taxable * rate / 100).quantize(_CENT, rounding=ROUND_HALF_UP)
        out.append((category, f"{rate.normalize():f}", taxable, amount))
    return out


class FlatConverter:
    """Reads flat batches with a layout and converts each invoice to UBL 2.1 (compiles its XSLT once)."""

    def __init__(self, layout_name: str = DEFAULT_LAYOUT, stylesheets: Stylesheets | None = None) -> None:
        self.layout_name = layout_name
        self._stylesheets = stylesheets or Stylesheets()

    @cached_property
    def layout(self) -> Layout:
        return Layout.load(self.layout_name)

    @property
    def _xslt(self) -> etree.XSLT:
        return self._stylesheets.get("flat-to-ubl.xsl")

    def intermediate(self, header: dict[str, str], invoice: list[_Record]) -> etree._Element:
        """The record → XML step: one element per record, one child per declared field."""
        root = etree.Element("invoice", layout=self.layout.name)
        head = etree.SubElement(root, "header")
        for name, value in header.items():
            etree.SubElement(head, name).text = value
        lines: list[dict[str, str]] = []
        for record in invoice:
            values = self.layout.check_record(record)
            el = etree.SubElement(root, record.kind, line=str(record.line))
            for name, value in values.items():
                etree.SubElement(el, name).text = value
            if self.layout.records[record.kind]["role"] == "line":
                lines.append(values)
        lines_net = sum((Decimal(v["line_net"]) for v in lines), Decimal(0))
        etree.SubElement(root, "lines_net").text = f"{lines_net:f}"
        for category, rate, taxable, amount in _vat_breakdown(lines):
            etree.SubElement(
                root, "vat", category=category, rate=rate, taxable=f"{taxable:f}", amount=f"{amount:f}"
            )
        return root

    def _check_placement(self, record: _Record, current: list[_Record] | None) -> None:
        """An invoice-level record must sit inside an invoice, after one of the record types it declares."""
        spec = self.layout.records[record.kind]
        what = f"{record.kind} record ({spec.get('label', record.kind)})"
        placement = spec.get("placement", "")
        where = f"; it belongs {placement}" if placement else ""
        if current is None:
            raise IdentifyError(f"flat file line {record.line}: {what} outside an invoice{where}")
        allowed = spec.get("after")
        previous = current[-1]
        if allowed and previous.kind not in allowed:
            raise IdentifyError(
                f"flat file line {record.line}: {what} not allowed after the {previous.kind} record of "
                f"line {previous.line}{where}"
            )

    def convert(self, data: bytes) -> list[FlatInvoice]:
        layout = self.layout
        text = _decode(layout, data)
        records = _records(layout, text)
        kinds = {
            role: layout.kind_of_role(role) for role in ("header", "invoice", "line", "totals", "trailer")
        }
        if not records or records[0].kind != kinds["header"]:
            raise IdentifyError(f"flat file line 1: first record must be {kinds['header']}")
        try:
            header = layout.check_record(records[0])
        except FieldError as exc:
            raise IdentifyError(f"flat file {exc}") from None
        invoices: list[list[_Record]] = []
        current: list[_Record] | None = None
        trailer: _Record | None = None
        line_records = 0
        for record in records[1:]:
            if trailer is not None:
                raise IdentifyError(
                    f"flat file line {record.line}: record after the trailer ({kinds['trailer']})"
                )
            if record.kind == kinds["header"]:
                raise IdentifyError(f"flat file line {record.line}: second header record")
            if record.kind == kinds["invoice"]:
                if current is not None:
                    raise IdentifyError(
                        f"flat file line {record.line}: invoice opened before the previous one "
                        f"(line {current[0].line}) was closed by a {kinds['totals']} record"
                    )
                current = [record]
            elif record.kind in (kinds["line"], kinds["totals"]):
                if current is None:
                    raise IdentifyError(
                        f"flat file line {record.line}: {record.kind} record outside an invoice"
                    )
                current.append(record)
                if record.kind == kinds["line"]:
                    line_records += 1
                else:
                    invoices.append(current)
                    current = None
            elif record.kind == kinds["trailer"]:
                if current is not None:
                    raise IdentifyError(
                        f"flat file line {record.line}: trailer before the invoice of line {current[0].line} was closed"
                    )
                trailer = record
            else:  # a record of another role (e.g. a note) belongs to the open invoice
                self._check_placement(record, current)
                assert current is not None
                current.append(record)
        if current is not None:
            raise IdentifyError(
                f"flat file: invoice of line {current[0].line} is never closed by a {kinds['totals']} record"
            )
        if trailer is None:
            raise IdentifyError(f"flat file: trailer record {kinds['trailer']} is missing")
        try:
            counts = layout.check_record(trailer)
        except FieldError as exc:
            raise IdentifyError(f"flat file {exc}") from None
        if int(counts["invoice_count"]) != len(invoices):
            raise IdentifyError(
                f"flat file line {trailer.line}, field 'number of F records': {counts['invoice_count']} declared, "
                f"{len(invoices)} found"
            )
        if int(counts["line_count"]) != line_records:
            raise IdentifyError(
                f"flat file line {trailer.line}, field 'number of L records': {counts['line_count']} declared, "
                f"{line_records} found"
            )
        if not invoices:
            raise IdentifyError("flat file holds no invoice")
        out = []
        for index, invoice in enumerate(invoices, start=1):
            try:
                tree = self.intermediate(header, invoice)
            except FieldError as exc:
                out.append(FlatInvoice(index, invoice[0].line, error=str(exc)))
                continue
            if not any(r.kind == kinds["line"] for r in invoice):
                out.append(
                    FlatInvoice(
                        index,
                        invoice[0].line,
                        error=f"line {invoice[0].line}: invoice has no line (L record)",
                    )
                )
                continue
            result = self._xslt(tree).getroot()
            etree.cleanup_namespaces(result, top_nsmap={"cac": _NS_CAC, "cbc": _NS_CBC})
            ubl = etree.tostring(result, xml_declaration=True, encoding="UTF-8")
            out.append(FlatInvoice(index, invoice[0].line, ubl=ubl))
        return out
