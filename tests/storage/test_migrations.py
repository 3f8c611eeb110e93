"""Schema migrations on every backend: empty -> head, then a no-op."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from numbind.cli import main
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage import migrate
from sqlalchemy import Engine, create_engine, inspect, text

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
    "store_state",
    "key_deltas",
    "rekeys",
    "fanout_outbox",
    "log_state",
    "log_leaves",
    "log_nodes",
    "log_checkpoints",
    "witness_state",
    "witness_alarms",
    "log_witness_keys",
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
        assert ("platform_pk", "bucket") in binding_indexes
        # Token first: the upsert key also serves lookups by token across platforms.
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("bindings")}
        assert ("token", "platform_pk", "account_ref") in uniques
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


def _upgrade_to(engine: Engine, revision: str) -> None:
    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_a_store_holding_64_byte_tokens_is_refused_and_left_as_it_was(database_url: str) -> None:
    """Pre-release stores hold RFC 9497 Finalize outputs: a hash of the element that tokens
    now are, which cannot be undone. The migration refuses, says why, and writes nothing."""
    engine = create_engine(database_url)
    try:
        _upgrade_to(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO principals (role, name, display_name, category, suspended,"
                    " created_us, feed_head) VALUES ('carrier', 'cm', '', '', false, 1, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO numbers (token, key_id, carrier_pk, state, first_known_us,"
                    " last_effective_us, updated_us) VALUES (:t, 'k', 1, 1, 1, 1, 1)"
                ),
                {"t": bytes(range(64))},
            )
        with pytest.raises(FailedPrecondition, match=r"64-byte tokens .*numbers: 1 rows"):
            migrate.upgrade(engine)
        assert migrate.current_revision(engine) == "0001"
        assert "store_state" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT token FROM numbers")).scalar_one() == bytes(range(64))
    finally:
        engine.dispose()


def test_an_empty_older_store_adopts_its_active_key_as_the_store_key(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        _upgrade_to(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO token_keys (key_id, public_key, state, created_us) VALUES"
                    " ('00000000000000aa', :pk, 2, 1), ('00000000000000bb', :pk, 1, 2)"
                ),
                {"pk": bytes(32)},
            )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(text("SELECT store_key_id, epoch FROM store_state")).one()
        assert tuple(row) == ("00000000000000bb", 1)
    finally:
        engine.dispose()


def test_the_history_is_one_line() -> None:
    """One head, each revision revising the one before it in file order: 0001 <- 0002 <- ..."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate._config())
    assert scripts.get_heads() == [migrate.head_revision()]
    chain = [r.revision for r in scripts.walk_revisions()]
    # walk_revisions goes head first: each revision must revise the one listed after it
    assert [scripts.get_revision(r).down_revision for r in chain] == [*chain[1:], None]
    assert chain == sorted(chain, reverse=True), "revision ids keep their numeric order"
    versions = Path(migrate.__file__).parent / "migrations" / "versions"
    assert len(chain) == len(list(versions.glob("0*.py"))), "a migration file is off the line"


@pytest.mark.parametrize("start", ["0001", "0002"])
def test_admin_migrate_brings_an_older_store_to_head(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], start: str
) -> None:
    """A store left at an older revision, with a principal registered before certificate
    pinning, reaches head; the principal pins no certificate (any the CA issued is accepted
    until its first reissue)."""
    engine = create_engine(database_url)
    try:
        _upgrade_to(engine, start)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO principals (role, name, display_name, category, suspended,"
                    " created_us, feed_head) VALUES ('platform', 'acme', '', '', false, 1, 0)"
                )
            )
    finally:
        engine.dispose()
    args = ["admin", "migrate", "--data-dir", str(tmp_path), "--database-url", database_url]
    assert main(args) == 0
    assert f"schema {start} -> {migrate.head_revision()}" in capsys.readouterr().out
    engine = create_engine(database_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert "cert_sha256" in {c["name"] for c in inspect(engine).get_columns("principals")}
        with engine.connect() as conn:
            pinned = conn.execute(text("SELECT name, cert_sha256 FROM principals")).all()
        assert [tuple(r) for r in pinned] == [("acme", None)]
    finally:
        engine.dispose()
