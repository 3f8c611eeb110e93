"""`serve` keeps PostgreSQL's planner statistics itself (services.planner_stats): a table
that grew past its statistics is analyzed within seconds, with autovacuum kept off it.
The embedded SQLite store has no such statistics and runs no keeper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from numbind.registry.testing import running_registry
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import require_postgres

ROWS = 1500  # past the keeper's floor of 1,000 changes


@pytest.mark.postgres
async def test_a_served_registry_analyzes_a_table_that_outgrew_its_statistics(
    tmp_path: Path,
) -> None:
    async with running_registry(tmp_path / "data", database_url=require_postgres()) as a:
        assert a.registry.planner_stats is not None
        db = a.registry.db

        def create(s: Session) -> None:
            s.execute(text("DROP TABLE IF EXISTS keeper_probe"))
            s.execute(text("CREATE TABLE keeper_probe (x int) WITH (autovacuum_enabled = false)"))

        def grow(s: Session) -> None:
            s.execute(text(f"INSERT INTO keeper_probe SELECT generate_series(1, {ROWS})"))
            s.execute(text("SELECT pg_stat_force_next_flush()"))

        def counted(s: Session) -> float:
            got = s.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'keeper_probe'"))
            return float(got.scalar_one())

        async def analyzed(rows: int) -> None:
            seen = -1.0
            for _ in range(100):  # 10 s: the keeper looks every second
                seen = db.transact(counted, write=False)
                if seen == rows:
                    return
                await asyncio.sleep(0.1)
            assert seen == rows

        db.transact(create)
        try:
            db.transact(grow)
            await analyzed(ROWS)
            # Grown again as much: a later round (not only the first) takes it.
            db.transact(grow)
            await analyzed(2 * ROWS)
        finally:
            db.transact(lambda s: s.execute(text("DROP TABLE keeper_probe")))


async def test_the_embedded_store_runs_no_keeper(tmp_path: Path) -> None:
    async with running_registry(tmp_path / "data") as a:
        assert a.registry.planner_stats is None
