"""Hostile and broken input through the real daemon: each file gets exactly one clear answer."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from daemon_harness import Daemon, read_ack, wait_for
from invoice_factory import make_ubl

pytestmark = pytest.mark.timeout(300)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&lol3;</Invoice>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&xxe;</Invoice>"""


def test_hostile_files_each_get_one_clear_rejection(tmp_path: Path) -> None:
    valid = make_ubl(lines=1, number="H-OK")
    hostile = {
        "bomb.zip": _zip({"a.xml": b"<a>" + b"A" * 30_000_000 + b"</a>"}),
        "nested.zip": _zip({"inner.zip": _zip({"x.xml": valid})}),
        "traversal.zip": _zip({"../../etc/evil.xml": valid}),
        "laughs.xml": BILLION_LAUGHS,
        "xxe.xml": EXTERNAL_ENTITY,
        "deep.xml": b"<a>" * 5000 + b"</a>" * 5000,
        "truncated.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog",
        "truncated.zip": _zip({"x.xml": valid})[:40],
        "binary.dat": bytes(range(256)) * 40,
        "latin1-garbage.txt": "H;pas un fichier;é".encode("latin-1"),
    }
    with Daemon(tmp_path / "data") as d:
        d.start()
        for name, data in hostile.items():
            d.drop(name, data)
        wait_for(lambda: all(d.acks_for(n) for n in hostile), 120, "an ack for every hostile file", d)
        assert d.stop() == 0
    for name in hostile:
        acks = d.acks_for(name)
        assert len(acks) == 1, name
        ack = read_ack(acks[0])
        assert ack["status"] == "Error", name
        assert ack["reasons"] == ["IRR_SYNTAX"], (name, ack["reasons"], ack["messages"])
        assert ack["messages"][0], name
    messages = {name: str(read_ack(d.acks_for(name)[0])["messages"][0]) for name in hostile}
    assert "nested" in messages["nested.zip"].lower()
    assert "DOCTYPE" in messages["xxe.xml"] and "passwd" not in (d.acks_for("xxe.xml")[0]).read_text()
    assert "DOCTYPE" in messages["laughs.xml"]
