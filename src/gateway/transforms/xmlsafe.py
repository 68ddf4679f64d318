"""Hardened XML parsing shared by every transform: no DTD, no entities, no network, bounded depth."""

from __future__ import annotations

import re
from typing import Protocol

from lxml import etree

from gateway.errors import IdentifyError

DEFAULT_MAX_DEPTH = 256
_PROLOG_SCAN_BYTES = 8192


class DepthLimited(Protocol):
    """Anything carrying a `max_xml_depth` (IdentifyLimits does)."""

    max_xml_depth: int


def safe_parser() -> etree.XMLParser:
    """A new hardened parser (parsers are cheap; one per call keeps threads apart)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def _has_doctype(data: bytes) -> bool:
    head = data[:_PROLOG_SCAN_BYTES]
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        return True
    # UTF-16 documents: look for the markup with interleaved NULs.
    return b"<\x00!\x00D\x00O\x00C\x00T\x00Y\x00P\x00E" in head or b"\x00<\x00!\x00D\x00O\x00C" in head


def max_depth(root: etree._Element) -> int:
    """Depth of the deepest element (the root is depth 1)."""
    depth = deepest = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def parse_xml(data: bytes, limits: DepthLimited | None = None) -> etree._Element:
    """Parse `data` safely and return its root element.

    Raises IdentifyError when the bytes are not well-formed, carry a DOCTYPE (entity bombs, XXE) or
    nest deeper than `limits.max_xml_depth`. The caller bounds the size.
    """
    limit = limits.max_xml_depth if limits is not None else DEFAULT_MAX_DEPTH
    if _has_doctype(data):
        raise IdentifyError("DOCTYPE is not allowed")
    parser = safe_parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else (exc.position[0] if exc.position else 0)
        message = re.sub(r",? line \d+, column \d+$", "", (exc.msg or str(exc)).strip())
        if "depth" in message.lower():
            raise IdentifyError(f"XML nests deeper than {min(limit, DEFAULT_MAX_DEPTH)} elements") from None
        raise IdentifyError(f"XML is not well-formed: {message} (line {line})") from None
    except ValueError as exc:  # e.g. unicode strings with an encoding declaration
        raise IdentifyError(f"XML is not well-formed: {exc}") from None
    if root is None:
        raise IdentifyError("XML is not well-formed: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise IdentifyError("DOCTYPE is not allowed")
    if limit < DEFAULT_MAX_DEPTH and max_depth(root) > limit:
        raise IdentifyError(f"XML nests deeper than {limit} elements")
    return root
