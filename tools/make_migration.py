"""Developer tool: write the Alembic revision that brings the migrations up to the models.

    .venv/bin/python tools/make_migration.py "outbox and recipients"

Builds a throw-away SQLite database from the existing migrations, compares it with the models and
writes `src/gateway/store/migrations/versions/<next>_<slug>.py`. Read and adjust what it wrote
(autogenerate misses renames and server defaults), then run tests/test_migrations.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from gateway.store.db import Store, _alembic_config, head_revision


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    message = sys.argv[1]
    head = head_revision()
    next_id = f"{int(head) + 1:04d}"
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40]
    with tempfile.TemporaryDirectory() as tmp:
        engine = Store(f"sqlite:///{Path(tmp) / 'm.db'}").engine
        with engine.connect() as conn:
            cfg = _alembic_config(conn)
            command.upgrade(cfg, "head")
            conn.commit()
            command.revision(cfg, message=message, autogenerate=True, rev_id=next_id)
        engine.dispose()
    versions = Path(__file__).resolve().parents[1] / "src/gateway/store/migrations/versions"
    written = next(versions.glob(f"{next_id}_*.py"))
    final = versions / f"{next_id}_{slug}.py"
    text = written.read_text().replace("gateway.store.models.UTCDateTime()", "UTCDateTime()")
    text = re.sub(r"[ ]*# ### (commands auto generated|end Alembic commands).*###\n", "", text)
    if "UTCDateTime()" in text:
        text = text.replace(
            "from alembic import op\n",
            "from alembic import op\n\nfrom gateway.store.models import UTCDateTime\n",
        )
    written.unlink()
    final.write_text(text)
    subprocess.run([sys.executable, "-m", "ruff", "check", "-q", "--fix", str(final)], check=False)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(final)], check=False)
    print(f"wrote {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
