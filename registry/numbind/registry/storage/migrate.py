"""Schema migrations with Alembic, driven from code so no alembic.ini is needed at run time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"


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


def upgrade(
    engine: Engine, *, partitions: int | None = None, revision: str = "head"
) -> tuple[str | None, str]:
    """Bring the schema to `revision` (head unless said); returns (before, after). A no-op
    when already at head.

    `partitions`: on PostgreSQL, how many hash partitions each growing table gets when a
    migration builds them (migration 0008_partitions; default NUMBIND_PARTITIONS, else 16).
    """
    before = current_revision(engine)
    if revision != "head" or before != head_revision():
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            if partitions is not None:
                cfg.attributes["partitions"] = partitions
            command.upgrade(cfg, revision)
    return before, head_revision() if revision == "head" else revision


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
