"""Shared fixtures. Storage-backed tests run on SQLite always and on PostgreSQL when
NUMBIND_TEST_DATABASE_URL is set; under CI=true a missing PostgreSQL is a failure."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from numbind.registry.testing import RunningRegistry, running_registry
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("NUMBIND_TEST_DATABASE_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def _backends() -> list[object]:
    pg = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
    return ["sqlite", pg]


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite file, or the test PostgreSQL database wiped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but NUMBIND_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL: set NUMBIND_TEST_DATABASE_URL to run")
    try:
        reset_postgres(PG_URL)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield PG_URL


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RunningRegistry]:
    """A real registry on a loopback port, embedded SQLite store."""
    async with running_registry(tmp_path / "data") as reg:
        yield reg


@pytest.fixture
async def registry_any_store(tmp_path: Path, database_url: str) -> AsyncIterator[RunningRegistry]:
    """The same, once per storage backend."""
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        yield reg
