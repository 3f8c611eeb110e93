"""The partition count of PostgreSQL's growing tables: `--partitions`, else
NUMBIND_PARTITIONS, else 16, each checked naming where a bad value came from; fixed when
the tables are built, so a store built with another count is refused, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.cli import main
from numbind.registry.storage import migrate, partitions
from sqlalchemy import Engine, create_engine, inspect, text

from tests.conftest import require_postgres

_GROWING = ("bindings", "numbers", "lifecycle_events", "orders")


def _partitions(engine: Engine) -> dict[str, tuple[str, int]]:
    """table -> (partition strategy and key, number of partitions), PostgreSQL only."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_get_partkeydef(c.oid),"
                " (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid)"
                " FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
            )
        ).all()
    return {name: (key, int(n)) for name, key, n in rows}


def test_growing_tables_are_hash_partitioned_by_token_on_postgresql(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUMBIND_PARTITIONS", raising=False)  # the default, 16
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        insp = inspect(engine)
        if engine.dialect.name == "sqlite":
            # SQLite is not partitioned; its rowid keys stay as they were.
            assert insp.get_pk_constraint("bindings")["constrained_columns"] == ["pk"]
            return
        assert _partitions(engine) == {t: ("HASH (token)", 16) for t in _GROWING}
        # Every primary and unique key holds the partition key (what Citus asks too).
        for table in _GROWING:
            assert "token" in insp.get_pk_constraint(table)["constrained_columns"], table
            for unique in insp.get_unique_constraints(table):
                assert "token" in unique["column_names"], (table, unique)
            for index in insp.get_indexes(table):
                assert not index["unique"] or "token" in index["column_names"], (table, index)
    finally:
        engine.dispose()


def test_the_partition_count_is_the_migrations_parameter(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUMBIND_PARTITIONS", "8")  # the parameter wins over the variable
    args = ["admin", "migrate", "--data-dir", str(tmp_path), "--database-url", database_url]
    assert main([*args, "--partitions", "4"]) == 0
    engine = create_engine(database_url)
    try:
        if engine.dialect.name != "sqlite":
            assert _partitions(engine) == {t: ("HASH (token)", 4) for t in _GROWING}
    finally:
        engine.dispose()


def test_the_flag_wins_then_the_variable_then_16() -> None:
    assert partitions.count(4, {"NUMBIND_PARTITIONS": "8"}) == 4
    assert partitions.count(None, {"NUMBIND_PARTITIONS": "8"}) == 8
    assert partitions.count(None, {"NUMBIND_PARTITIONS": ""}) == 16
    assert partitions.count(None, {}) == 16
    # A flag of 0 is refused, not passed over for the variable (it once built 5, or 16).
    with pytest.raises(ValueError, match="--partitions: got 0"):
        partitions.count(0, {"NUMBIND_PARTITIONS": "5"})


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("flag", ["0", "-3", "1025", "abc", "1_6", "１６"])
def test_a_bad_flag_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
) -> None:
    monkeypatch.setenv("NUMBIND_PARTITIONS", "5")
    for command in (["admin", "migrate"], ["admin", "init"], ["serve", "--init"]):
        rc, _, err = _run(capsys, *command, "--data-dir", str(tmp_path), f"--partitions={flag}")
        assert rc == 2
        assert f"argument --partitions: got '{flag}', want a whole number 1..1024" in err
    assert not tmp_path.joinpath("registry.db").exists()


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1_6"])
def test_a_bad_variable_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv("NUMBIND_PARTITIONS", value)
    args = ["admin", "migrate", "--data-dir", str(tmp_path), "--database-url", database_url]
    rc, _, err = _run(capsys, *args)
    assert rc == 1
    assert err.splitlines() == [
        f"numbind: error: NUMBIND_PARTITIONS: got '{value}', want a whole number 1..1024"
    ]
    engine = create_engine(database_url)
    try:
        assert not migrate.has_schema(engine)
    finally:
        engine.dispose()


def test_admin_init_builds_the_count_asked_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = require_postgres()
    args = ["admin", "init", "--data-dir", str(tmp_path), "--database-url", url]
    rc, out, _ = _run(capsys, *args, "--partitions", "3")
    assert rc == 0
    assert "partitions:     3 per growing table" in out
    engine = create_engine(url)
    try:
        assert _partitions(engine) == {t: ("HASH (token)", 3) for t in _GROWING}
    finally:
        engine.dispose()


def test_a_store_built_with_another_count_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`admin migrate --partitions 16` on a store built with 4 said "schema already at"
    and exited 0, leaving 4."""
    url = require_postgres()
    store = ["--database-url", url]
    migrate_args = ["admin", "migrate", "--data-dir", str(tmp_path / "m"), *store]
    assert _run(capsys, *migrate_args, "--partitions", "4")[0] == 0
    for command in (
        migrate_args,
        ["admin", "init", "--data-dir", str(tmp_path / "i"), *store],
        ["serve", "--init", "--data-dir", str(tmp_path / "s"), "--listen", "127.0.0.1:0", *store],
    ):
        rc, _, err = _run(capsys, *command, "--partitions", "16")
        assert rc == 1, command
        lines = err.splitlines()  # serve's JSON logs come first
        assert command[0] == "serve" or len(lines) == 1, lines
        assert lines[-1] == (
            "numbind: error: --partitions: got 16, but this store's tables were built with 4 "
            "partitions; the count is fixed when the tables are built (changing it means "
            "dumping and reloading them)"
        )
    # The same count is fine, and so is none (the store says how many it has).
    for flag in (["--partitions", "4"], []):
        rc, out, _ = _run(capsys, *migrate_args, *flag)
        assert rc == 0
        assert out.splitlines()[-1] == (
            "partitions: 4 per growing table (fixed when the tables were built)"
        )


def test_a_count_asked_of_an_unpartitioned_store_says_it_is_not_used(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'registry.db'}"
    for command in (["admin", "init"], ["admin", "migrate"]):
        args = [*command, "--data-dir", str(tmp_path / "d"), "--database-url", store]
        rc, out, _ = _run(capsys, *args, "--partitions", "8")
        assert rc == 0
        assert "8 asked, not used: this store is not partitioned" in out
