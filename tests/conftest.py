"""Shared fixtures: store URLs (SQLite always, PostgreSQL when GATEWAY_TEST_PG_URL is set), corpus path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"

pytest_plugins = ["sftp_harness"]  # the make_harness fixture of the SFTP tests


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        # every table of every version (and Alembic's own): the test database belongs to the tests
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    url = os.environ.get("GATEWAY_TEST_PG_URL")
    if not url:
        pytest.skip("GATEWAY_TEST_PG_URL is not set: PostgreSQL store tests skipped")
    _reset_pg(url)
    yield url
    _reset_pg(url)
