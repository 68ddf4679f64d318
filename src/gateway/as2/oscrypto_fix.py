"""Load `oscrypto` (pyas2lib's crypto backend) on OpenSSL versions its 1.3.0 release cannot parse.

oscrypto 1.3.0 (the last release on PyPI) finds the libcrypto version with the pattern
`\\b(\\d\\.\\d\\.\\d[a-z]*)\\b`, which matches no version with a two-digit part ("OpenSSL 3.0.19"), and
then refuses to load ("Error detecting the version of libcrypto"). Its development branch accepts
`\\d+`. `load_oscrypto()` imports the backend module from oscrypto's own source with that one pattern
widened, before pyas2lib imports it; with an oscrypto that loads as is, it changes nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

_BACKENDS = ("oscrypto._openssl._libcrypto_cffi", "oscrypto._openssl._libcrypto_ctypes")
_FIXES = (
    ("'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d[a-z]*)\\\\b'", "'\\\\b(\\\\d+\\\\.\\\\d+\\\\.\\\\d+[a-z]*)\\\\b'"),
    (
        "'(?<=LibreSSL )(\\\\d\\\\.\\\\d(\\\\.\\\\d)?)\\\\b'",
        "'(?<=LibreSSL )(\\\\d+\\\\.\\\\d+(\\\\.\\\\d+)?)\\\\b'",
    ),
)
_lock = threading.Lock()


def load_oscrypto() -> None:
    """Make `import pyas2lib` work on this machine's OpenSSL (idempotent, thread-safe)."""
    with _lock:
        if "oscrypto._openssl._libcrypto" in sys.modules:
            return
        try:
            importlib.import_module("oscrypto._openssl._libcrypto")
            return
        except Exception:  # noqa: BLE001 - LibraryNotFoundError from the version check: patch below
            for name in [n for n in sys.modules if n.startswith("oscrypto._openssl.")]:
                del sys.modules[name]
        for name in _BACKENDS:
            _load_patched(name)
        importlib.import_module("oscrypto._openssl._libcrypto")


def _load_patched(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.origin is None:
        return
    with open(spec.origin, encoding="utf-8") as fh:
        source = fh.read()
    for old, new in _FIXES:
        source = source.replace(old, new)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(compile(source, spec.origin, "exec"), module.__dict__)  # noqa: S102 - oscrypto's own source
    except Exception:  # noqa: BLE001 - e.g. the cffi variant without cffi: the other variant is used
        del sys.modules[name]
