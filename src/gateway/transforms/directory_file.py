"""Reading a recipient directory file: CSV (our columns) or JSON (AFNOR Directory Service 1.3.0 shape).

Pure: bytes in, `ParsedDirectory` out — the good lines as `Recipient`s with their line numbers, and
each rejected line with its line number and the reason. Nothing is half-read: a line is either taken
whole or rejected.

CSV (issue 17): a header with at least the columns of `CSV_COLUMNS` (others ignored, order free;
`service_or_engagement_required` is read when present). `services` = `CODE:Name:1;CODE2:Name:0`
(code, name, active); `active` and the `*_required` flags are `1`/`0` (empty: active 1, flags 0);
`siren` may be empty when `siret` is given; `syntax` is `same` (default), `ubl`, `cii` or `facturx`.

JSON: an answer of `POST /v1/directory-line/search` (`{"results": [directory line, …]}`) or a bare
list of directory lines (`directoryLinePayloadStatusLegalUnitFacilityRoutingCode` of
`directory-service-1.3.0.json`); results of `/v1/siren/search`, `/v1/siret/search` and
`/v1/routing-code/search` are read too (`entry_kind`: their own fields are at the top level; they carry
no electronic address). Mapping (chorus-reference.md §4.2):
- `siren`, `siret`, `routingIdentifier` (or the same fields of `legalUnit`, `facility`, `routingCode`)
  → the line's SIREN / SIRET / routing code; `addressingIdentifier` → electronic address (BT-49);
- name: `routingCode.routingCodeName`, else `facility.name`, else `legalUnit.businessName`;
- active: `directoryLineStatus` Enabled (absent counts as Enabled; Disabled and Upcoming do not) and no
  administrative status `C` (closed) on the legal unit, facility or routing code;
- `facility.b2gAdditionalData`: `serviceCodeStatus` → service code required,
  `managesLegalCommitmentCode` (or `routingCode.managesLegalCommitment`) → engagement required,
  `managesLegalCommitmentOrServiceCode` → one of the two required;
- services of a SIRET line: the routing codes given for that SIRET in the same file (the 2026
  directory carries the former Chorus Pro services as routing codes), active as their lines are.
The AFNOR shape has no receiving partner nor syntax: the importer gives them (`partner`, `syntax`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.transforms.route import SYNTAXES, Recipient, Service, line_key
from gateway.transforms.siret import siren_error, siret_error

CSV_COLUMNS = (
    "siret",
    "siren",
    "routing_code",
    "addressing_id",
    "name",
    "active",
    "service_code_required",
    "engagement_required",
    "services",
    "partner",
    "syntax",
)
ROUTING_CODE_RE = re.compile(r"^[-_/a-zA-Z0-9]{1,100}$")  # directory-service-1.3.0 routingIdentifier
ADDRESSING_ID_RE = re.compile(r"^[A-Za-z0-9+\-_.]{1,125}$")  # BR-FR-23 charset, addressingIdentifier ≤125
PARTNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # config.PARTNER_ID
NAME_MAX = 150
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


class DirectoryFileError(ValueError):
    """The file as a whole cannot be read (encoding, header, JSON syntax or shape)."""


@dataclass(frozen=True)
class Rejected:
    line: int | None  # 1-based line of the file where the rejected record starts
    reason: str
    where: str = ""  # "results[3]" for a JSON entry

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "where": self.where, "reason": self.reason}

    def __str__(self) -> str:
        place = f"line {self.line}" if self.line is not None else self.where
        if self.line is not None and self.where:
            place += f" ({self.where})"
        return f"{place}: {self.reason}"


@dataclass
class ParsedDirectory:
    format: str  # csv | json
    lines: list[tuple[int | None, Recipient]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def recipients(self) -> list[Recipient]:
        return [r for _, r in self.lines]


class _LineError(ValueError):
    pass


# -- common checks --------------------------------------------------------------------------------------
def _identifiers(
    siren: str, siret: str, routing: str, addressing: str
) -> tuple[str, str | None, str | None, str | None]:
    siren, siret = siren.replace(" ", ""), siret.replace(" ", "")
    if siret:
        problem = siret_error(siret)
        if problem:
            raise _LineError(problem)
        if siren and siret[:9] != siren:
            raise _LineError(f"SIRET {siret} does not start with the SIREN {siren}")
        siren = siren or siret[:9]
    if not siren:
        raise _LineError("neither SIREN nor SIRET given")
    problem = siren_error(siren)
    if problem:
        raise _LineError(problem)
    if routing:
        if not siret:
            raise _LineError(
                f"routing code {routing} given without a SIRET (a routing code belongs to a SIRET)"
            )
        if not ROUTING_CODE_RE.match(routing):
            raise _LineError(f"routing code {routing!r} must be 1-100 characters among A-Z a-z 0-9 - _ /")
    if addressing and not ADDRESSING_ID_RE.match(addressing):
        raise _LineError(
            f"addressing identifier {addressing!r} must be 1-125 characters among A-Z a-z 0-9 + - _ ."
        )
    return siren, siret or None, routing or None, addressing or None


def _check_partner_syntax(partner: str, syntax: str) -> tuple[str | None, str]:
    if partner and not PARTNER_RE.match(partner):
        raise _LineError(f"partner {partner!r} is not a partner id ({PARTNER_RE.pattern})")
    syntax = syntax.lower() or "same"
    if syntax not in SYNTAXES:
        raise _LineError(f"syntax {syntax!r} is not one of {', '.join(SYNTAXES)}")
    return partner or None, syntax


class _Dedup:
    """Rejects a second line with the same key or the same electronic address."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.addresses: dict[str, str] = {}

    def check(self, recipient: Recipient, place: str) -> None:
        first = self.keys.get(recipient.key)
        if first is not None:
            raise _LineError(f"same SIREN/SIRET/routing code as {first}")
        if recipient.addressing_id:
            other = self.addresses.get(recipient.addressing_id)
            if other is not None:
                raise _LineError(f"addressing identifier {recipient.addressing_id} already given on {other}")
            self.addresses[recipient.addressing_id] = place
        self.keys[recipient.key] = place


# -- CSV ------------------------------------------------------------------------------------------------
def _flag(row: dict[str, str], name: str, default: bool) -> bool:
    raw = (row.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise _LineError(f"{name} must be 1 or 0, not {raw!r}")


def parse_services(text: str) -> tuple[Service, ...]:
    """`CODE:Name:1;CODE2:Name:0` → services (a name may hold ':'; empty text → none)."""
    services: list[Service] = []
    seen: set[str] = set()
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        code, sep, rest = part.partition(":")
        name, sep2, active = rest.rpartition(":")
        code, name, active = code.strip(), name.strip(), active.strip()
        if not sep or not sep2 or not code:
            raise _LineError(f"service {part!r} is not CODE:Name:1 or CODE:Name:0")
        if active not in ("0", "1"):
            raise _LineError(f"service {code}: active must be 1 or 0, not {active!r}")
        if len(code) > 100:
            raise _LineError(f"service code {code[:20]}… is longer than 100 characters")
        if code in seen:
            raise _LineError(f"service {code} listed twice")
        seen.add(code)
        services.append(Service(code=code, name=name, active=active == "1"))
    return tuple(services)


def _csv_recipient(row: dict[str, str]) -> Recipient:
    def col(name: str) -> str:
        return (row.get(name) or "").strip()

    siren, siret, routing, addressing = _identifiers(
        col("siren"), col("siret"), col("routing_code"), col("addressing_id")
    )
    name = col("name")
    if len(name) > NAME_MAX:
        raise _LineError(f"name is longer than {NAME_MAX} characters")
    partner, syntax = _check_partner_syntax(col("partner"), col("syntax"))
    return Recipient(
        siren=siren,
        siret=siret,
        routing_code=routing,
        addressing_id=addressing,
        name=name,
        active=_flag(row, "active", True),
        service_code_required=_flag(row, "service_code_required", False),
        engagement_required=_flag(row, "engagement_required", False),
        service_or_engagement_required=_flag(row, "service_or_engagement_required", False),
        services=parse_services(col("services")),
        partner=partner,
        syntax=syntax,
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DirectoryFileError(f"not UTF-8 text (byte {exc.start})") from None


def parse_csv(data: bytes) -> ParsedDirectory:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    parsed = ParsedDirectory(format="csv")
    try:
        header = next(reader)
    except StopIteration:
        raise DirectoryFileError("empty file: a header line is expected") from None
    except csv.Error as exc:
        raise DirectoryFileError(f"line 1: {exc}") from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise DirectoryFileError(f"line 1: header lacks column(s) {', '.join(missing)}")
    doubled = sorted({n for n in names if n and names.count(n) > 1})
    if doubled:
        raise DirectoryFileError(f"line 1: column(s) {', '.join(doubled)} given twice")
    dedup = _Dedup()
    end = reader.line_num
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.rejected.append(Rejected(start, f"unreadable CSV: {exc}"))
            break  # the reader cannot resynchronise after a broken quote
        end = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(names):
            parsed.rejected.append(Rejected(start, f"{len(values)} fields where the header has {len(names)}"))
            continue
        row = dict(zip(names, values, strict=True))
        try:
            recipient = _csv_recipient(row)
            dedup.check(recipient, f"line {start}")
        except _LineError as exc:
            parsed.rejected.append(Rejected(start, str(exc)))
            continue
        parsed.lines.append((start, recipient))
    return parsed


# -- JSON (AFNOR Directory Service 1.3.0) ---------------------------------------------------------------
_LINE_STATUSES = ("Enabled", "Disabled", "Upcoming")
_ADMIN_STATUSES = ("A", "C")


def _entry_lines(text: str, count: int, top_is_list: bool) -> list[int | None]:
    """The 1-based text line where each entry of the results array starts (None if not found)."""
    unknown: list[int | None] = [None] * count
    match = re.match(r"\s*\[", text) if top_is_list else re.search(r'"results"\s*:\s*\[', text)
    if match is None:
        return unknown
    decoder = json.JSONDecoder()
    pos = match.end()
    lines: list[int | None] = []
    for _ in range(count):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return unknown
    return lines


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _LineError(f"{where} must be an object")
    return value


def _str(obj: dict[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _LineError(f"{where}{name} must be a string")
    return value.strip()


def _bool(obj: dict[str, Any], name: str, where: str) -> bool:
    value = obj.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _LineError(f"{where}{name} must be true or false")
    return value


def _enum(obj: dict[str, Any], name: str, allowed: tuple[str, ...], where: str) -> str:
    value = _str(obj, name, where)
    if value and value not in allowed:
        raise _LineError(f"{where}{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _agree(values: list[tuple[str, str]], what: str) -> str:
    given = [(w, v) for w, v in values if v]
    for w, v in given[1:]:
        if v != given[0][1]:
            raise _LineError(f"{what}: {given[0][0]} {given[0][1]} and {w} {v} differ")
    return given[0][1] if given else ""


_ROUTING_RESULT_KEYS = ("routingCodeName", "routingIdentifierType", "managesLegalCommitmentCode")
_FACILITY_RESULT_KEYS = ("facilityType", "b2gAdditionalData", "siretInstructions", "name")
_LEGAL_UNIT_RESULT_KEYS = ("businessName", "entityType", "instructions")


def entry_kind(entry: dict[str, Any]) -> str:
    """Which Directory Service resource an entry is: a directory line (`directory-line/search`), or a
    result of `routing-code/search`, `siret/search` or `siren/search` (their top-level fields differ)."""
    if any(k in entry for k in _ROUTING_RESULT_KEYS):
        return "routing-code"
    if "siret" in entry and any(k in entry for k in _FACILITY_RESULT_KEYS):
        return "facility"
    if any(k in entry for k in _LEGAL_UNIT_RESULT_KEYS):
        return "legal-unit"
    return "directory-line"


def _parts(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str, str, str]:
    """(legal unit, facility, routing code) objects of an entry, with their field-name prefixes."""
    kind = entry_kind(entry)
    legal = _obj(entry.get("legalUnit"), "legalUnit")
    if kind == "legal-unit":
        return entry, {}, {}, "", "", ""
    if kind == "facility":
        return legal, entry, {}, "legalUnit.", "", ""
    facility = _obj(entry.get("facility"), "facility")
    if kind == "routing-code":
        return legal, facility, entry, "legalUnit.", "facility.", ""
    return (
        legal,
        facility,
        _obj(entry.get("routingCode"), "routingCode"),
        "legalUnit.",
        "facility.",
        "routingCode.",
    )


def _json_recipient(line: Any, partner: str | None, syntax: str) -> Recipient:
    entry = _obj(line, "a directory line")
    legal, facility, routing_obj, lp, fp, rp = _parts(entry)
    b2g = _obj(facility.get("b2gAdditionalData"), f"{fp}b2gAdditionalData")
    siren = _agree(
        [
            ("siren", _str(entry, "siren", "")),
            (f"{lp}siren", _str(legal, "siren", lp)),
            (f"{fp}siren", _str(facility, "siren", fp)),
        ],
        "SIREN",
    )
    siret = _agree(
        [("siret", _str(entry, "siret", "")), (f"{fp}siret", _str(facility, "siret", fp))], "SIRET"
    )
    routing = _agree(
        [
            ("routingIdentifier", _str(entry, "routingIdentifier", "")),
            (f"{rp}routingIdentifier", _str(routing_obj, "routingIdentifier", rp)),
        ],
        "routing code",
    )
    addressing = _str(entry, "addressingIdentifier", "")
    siren, siret_v, routing_v, addressing_v = _identifiers(siren, siret, routing, addressing)
    status = _enum(entry, "directoryLineStatus", _LINE_STATUSES, "")
    closed = [
        label
        for label, obj, prefix in (
            ("legal unit", legal, lp),
            ("facility", facility, fp),
            ("routing code", routing_obj, rp),
        )
        if obj and _enum(obj, "administrativeStatus", _ADMIN_STATUSES, prefix) == "C"
    ]
    name = (
        _str(routing_obj, "routingCodeName", rp)
        or _str(facility, "name", fp)
        or _str(legal, "businessName", lp)
    )
    engagement = (
        _bool(b2g, "managesLegalCommitmentCode", f"{fp}b2gAdditionalData.")
        or _bool(routing_obj, "managesLegalCommitment", rp)
        or _bool(routing_obj, "managesLegalCommitmentCode", rp)
    )
    return Recipient(
        siren=siren,
        siret=siret_v,
        routing_code=routing_v,
        addressing_id=addressing_v,
        name=name[:NAME_MAX],
        active=status in ("", "Enabled") and not closed,
        service_code_required=_bool(b2g, "serviceCodeStatus", f"{fp}b2gAdditionalData."),
        engagement_required=engagement,
        service_or_engagement_required=_bool(
            b2g, "managesLegalCommitmentOrServiceCode", f"{fp}b2gAdditionalData."
        ),
        partner=partner,
        syntax=syntax,
    )


def _with_routing_services(
    lines: list[tuple[int | None, Recipient]],
) -> Iterator[tuple[int | None, Recipient]]:
    by_siret: dict[str, list[Service]] = {}
    for _, r in lines:
        if r.siret and r.routing_code:
            by_siret.setdefault(r.siret, []).append(Service(r.routing_code, r.name, r.active))
    for number, r in lines:
        services = by_siret.get(r.siret or "") if r.routing_code is None else None
        yield (number, replace(r, services=tuple(services)) if services else r)


def parse_directory_json(data: bytes, *, partner: str | None = None, syntax: str = "same") -> ParsedDirectory:
    text = _decode(data)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DirectoryFileError(f"not JSON: {exc}") from None
    try:
        partner, syntax = _check_partner_syntax(partner or "", syntax)
    except _LineError as exc:
        raise DirectoryFileError(str(exc)) from None
    if isinstance(doc, list):
        entries, top_is_list, label = doc, True, ""
    elif isinstance(doc, dict) and isinstance(doc.get("results"), list):
        entries, top_is_list, label = doc["results"], False, "results"
    else:
        raise DirectoryFileError(
            'expected a directory-line search answer {"results": [...]} or a list of directory lines'
        )
    numbers = _entry_lines(text, len(entries), top_is_list)
    parsed = ParsedDirectory(format="json")
    dedup = _Dedup()
    for index, entry in enumerate(entries):
        where = f"{label}[{index}]"
        try:
            recipient = _json_recipient(entry, partner, syntax)
            dedup.check(recipient, where if numbers[index] is None else f"line {numbers[index]}")
        except _LineError as exc:
            parsed.rejected.append(Rejected(numbers[index], str(exc), where))
            continue
        parsed.lines.append((numbers[index], recipient))
    parsed.lines = list(_with_routing_services(parsed.lines))
    return parsed


def parse_directory(
    data: bytes,
    *,
    fmt: str | None = None,
    filename: str = "",
    partner: str | None = None,
    syntax: str = "same",
) -> ParsedDirectory:
    """CSV or JSON by `fmt`, else by the file name's extension, else by the first character."""
    if fmt is None:
        lower = filename.lower()
        if lower.endswith(".json"):
            fmt = "json"
        elif lower.endswith(".csv"):
            fmt = "csv"
        else:
            fmt = "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") else "csv"
    if fmt == "json":
        return parse_directory_json(data, partner=partner, syntax=syntax)
    if fmt == "csv":
        if partner is not None or syntax != "same":
            raise DirectoryFileError("--partner and --syntax apply to JSON files; CSV lines carry their own")
        return parse_csv(data)
    raise DirectoryFileError(f"unknown directory format {fmt!r} (csv or json)")


__all__ = [
    "CSV_COLUMNS",
    "DirectoryFileError",
    "ParsedDirectory",
    "Rejected",
    "line_key",
    "parse_csv",
    "parse_directory",
    "parse_directory_json",
    "parse_services",
]
