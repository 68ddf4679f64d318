"""Schema migrations (Alembic): from scratch they build exactly the models; old databases are adopted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from gateway.errors import SchemaError
from gateway.store.db import Store, _alembic_config, head_revision
from gateway.store.models import Base


def _upgrade_from_scratch(url: str, target: str = "head") -> None:
    engine = Store(url).engine
    with engine.connect() as conn:
        command.upgrade(_alembic_config(conn), target)
        conn.commit()
    engine.dispose()


def test_migrations_from_scratch_build_exactly_the_models(store_url: str) -> None:
    """Every table, column and index a model declares has its migration (and nothing else exists)."""
    _upgrade_from_scratch(store_url)
    engine = Store(store_url).engine
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; write a revision in store/migrations: {diff}"


def test_a_gateway_0_1_database_is_adopted_and_upgraded(store_url: str) -> None:
    _upgrade_from_scratch(store_url, "0001")
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"))
        conn.execute(text("INSERT INTO schema_version VALUES (1, CURRENT_TIMESTAMP)"))
    engine.dispose()
    store = Store(store_url)
    assert store.current_revision() == "0001"
    with pytest.raises(SchemaError, match="older than this gateway.*gateway db upgrade"):
        store.check_schema()
    assert store.migrate() == "0001"
    assert store.check_schema() == head_revision()
    with store.engine.connect() as conn:
        assert not inspect(conn).has_table("schema_version")
    store.close()


def test_an_empty_database_is_reported_not_created_by_checks(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    with pytest.raises(SchemaError, match="no gateway schema yet"):
        store.check_schema()
    assert store.current_revision() is None
    store.close()


def test_read_only_commands_never_migrate_and_db_upgrade_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "gateway.toml").write_text("")

    def gateway(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    flows = gateway("flows")
    assert flows.returncode == 2 and "no gateway schema yet" in flows.stderr
    assert "Traceback" not in flows.stderr
    status = gateway("db", "status")
    assert status.returncode == 1 and "upgrade needed" in status.stdout
    upgrade = gateway("db", "upgrade")
    assert upgrade.returncode == 0 and f"to {head_revision()}" in upgrade.stdout, upgrade.stderr
    assert gateway("db", "status").returncode == 0
    assert gateway("flows").returncode == 0
