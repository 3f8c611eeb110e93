"""Schema migrations on every backend: empty -> head, then a no-op."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.cli import main
from numbind.registry.storage import migrate
from sqlalchemy import create_engine, inspect

TABLES = {
    "principals",
    "token_keys",
    "bindings",
    "numbers",
    "lifecycle_events",
    "revocations",
    "orders",
    "feed_events",
    "idempotency",
    "attestation_nonces",
    "usage",
    "alembic_version",
}


def test_upgrade_creates_schema_then_is_a_noop(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        before, after = migrate.upgrade(engine)
        assert before is None and after == migrate.head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert migrate.upgrade(engine) == (after, after)
    finally:
        engine.dispose()


def test_indexes_for_the_hot_queries_exist(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        insp = inspect(engine)
        binding_indexes = {tuple(i["column_names"]) for i in insp.get_indexes("bindings")}
        assert ("token",) in binding_indexes
        assert ("platform_pk", "bucket") in binding_indexes
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("bindings")}
        assert ("platform_pk", "token", "account_ref") in uniques
        assert insp.get_pk_constraint("feed_events")["constrained_columns"] == [
            "platform_pk",
            "seq",
        ]
    finally:
        engine.dispose()


def test_admin_migrate_command(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["admin", "migrate", "--data-dir", str(tmp_path), "--database-url", database_url]
    assert main(args) == 0
    assert "->" in capsys.readouterr().out
    assert main(args) == 0
    assert "already at" in capsys.readouterr().out


def test_migrations_match_the_models(database_url: str) -> None:
    """Nothing in registry/storage/models.py is missing from the Alembic history."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from numbind.registry.storage.models import Base

    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
