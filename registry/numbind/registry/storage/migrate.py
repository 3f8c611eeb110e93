"""Schema migrations with Alembic, driven from code so no alembic.ini is needed at run time."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage import partitions as partition_counts
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"
# Held by the transaction that migrates a PostgreSQL store: N `serve` processes started
# at once on a store that needs migrating would otherwise each run the migrations, and all
# but one die on the others' CREATE TYPE/TABLE (pg_type_typname_nsp_index).
_MIGRATION_LOCK = 0x6E756D62696E6402  # "numbind" + 2 (storage.planner_stats has + 1)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Autogenerate's view of the database: the models' tables, not their partitions
    (PostgreSQL lists bindings_p0 ... beside bindings)."""
    if type_ != "table":
        return True
    from numbind.registry.storage.models import Base

    return name in Base.metadata.tables


def partitions_of(conn: Connection, parent: str) -> list[str]:
    """The partitions of table `parent`, by name (PostgreSQL; none elsewhere): for the
    migrations that set a storage option on each (one cannot be set on the parent)."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"
            " ORDER BY c.relname"
        ),
        {"parent": parent},
    )
    return [str(r[0]) for r in rows]


def set_fillfactor(conn: Connection, parent: str, fillfactor: int | None) -> None:
    """Set (None: reset) the fillfactor of each partition of `parent` (PostgreSQL; nothing
    elsewhere, where there are no partitions): the migrations that leave room on a table's
    pages for its rows' updates."""
    option = "RESET (fillfactor)" if fillfactor is None else f"SET (fillfactor = {int(fillfactor)})"
    for name in partitions_of(conn, parent):
        conn.execute(text(f'ALTER TABLE "{name}" {option}'))


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def has_schema(engine: Engine) -> bool:
    """Whether any migration ran on this store: its version table, read without Alembic
    (whose context logs as it starts)."""
    return inspect(engine).has_table("alembic_version")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def partition_count(conn: Connection) -> int | None:
    """How many hash partitions the store's growing tables have (those of `bindings`;
    0008_partitions gives them all the same count); None where they are not partitioned
    (SQLite, or a PostgreSQL store not yet built or migrated that far)."""
    return len(partitions_of(conn, "bindings")) or None


def store_partitions(engine: Engine) -> int | None:
    """`partition_count` of the store behind `engine`."""
    with engine.connect() as conn:
        return partition_count(conn)


def upgrade(
    engine: Engine, *, partitions: int | None = None, revision: str = "head"
) -> tuple[str | None, str]:
    """Bring the schema to `revision` (head unless said); returns (before, after). A no-op
    when already at head.

    `partitions`: on PostgreSQL, how many hash partitions each growing table gets when a
    migration builds them (0008_partitions); None: NUMBIND_PARTITIONS, else 16. Checked
    first (ValueError naming `--partitions` or the variable); a count given here that
    differs from the one the store's tables were built with is refused
    (FailedPrecondition), since it is fixed when they are built.

    On PostgreSQL one process migrates at a time (a transaction-scoped advisory lock,
    taken before the revision is read): the others wait, then find the schema at head.
    """
    count = partition_counts.count(partitions, os.environ)
    head = head_revision()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        # Read under the lock: a process that waited sees what the one before it did.
        before = MigrationContext.configure(conn).get_current_revision()
        built = partition_count(conn)
        if partitions is not None and built is not None and built != partitions:
            raise FailedPrecondition(
                f"--partitions: got {partitions}, but this store's tables were built with "
                f"{built} partitions; the count is fixed when the tables are built (changing "
                "it means dumping and reloading them)"
            )
        if revision != "head" or before != head:
            cfg = _config()
            cfg.attributes["connection"] = conn
            cfg.attributes["partitions"] = count
            command.upgrade(cfg, revision)
    return before, head if revision == "head" else revision


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision`, newest migration first, in one transaction: a
    release's rollback, and how the migration tests check each downgrade."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def autogenerate(engine: Engine, message: str) -> None:
    """Developer helper: write a new revision from the models' difference to the database."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
