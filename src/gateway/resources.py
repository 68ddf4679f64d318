"""Where the project's own stylesheets, schemas and rule files live.

The repository keeps them in top-level `xslt/`, `schematron/` and `schemas/` folders (see DEVELOPERS.md);
an editable install finds them there. Nothing is read at import time.
"""

from __future__ import annotations

from pathlib import Path


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resource_path(kind: str, name: str) -> Path:
    """Path of `name` inside the `kind` folder (`xslt`, `schematron`, `schemas`, `config`)."""
    path = project_root() / kind / name
    if not path.exists():
        raise FileNotFoundError(f"project resource {kind}/{name} not found at {path}")
    return path
