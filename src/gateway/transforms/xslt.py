"""The gateway's own XSLT 1.0 stylesheets (`xslt/`), run with lxml: compiled once, on first use.

One cache for every transform that runs our stylesheets (summaries, CII ⇄ UBL, flat files). Stylesheets
are parsed with the hardened parser and run with every file and network access denied.
"""

from __future__ import annotations

import threading

from lxml import etree

from gateway.resources import resource_path
from gateway.transforms.xmlsafe import safe_parser


class Stylesheets:
    def __init__(self) -> None:
        self._compiled: dict[str, etree.XSLT] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> etree.XSLT:
        """The compiled `xslt/<name>`."""
        compiled = self._compiled.get(name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(name)
                if compiled is None:
                    doc = etree.parse(str(resource_path("xslt", name)), safe_parser())
                    compiled = etree.XSLT(doc, access_control=etree.XSLTAccessControl.DENY_ALL)
                    self._compiled[name] = compiled
        return compiled
