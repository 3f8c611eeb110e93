"""Schema migrations on every backend: empty -> head, then a no-op."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from numbind.cli import main
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage import migrate
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from tests.conftest import require_postgres

TABLES = {
    "principals",
    "token_keys",
    "bindings",
    "numbers",
    "lifecycle_events",
    "revocations",
    "orders",
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
        # Replay is a range scan of the orders' unique feed index, which holds the
        # partition key on both backends (one model).
        feed = {tuple(i["column_names"]) for i in insp.get_indexes("orders") if i["unique"]}
        assert ("platform_pk", "feed_seq", "token") in feed
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
    """Nothing in registry/storage/models/ is missing from the Alembic history."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from numbind.registry.storage.models import Base

    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": migrate.include_name, "compare_type": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_a_store_holding_64_byte_tokens_is_refused_and_left_as_it_was(database_url: str) -> None:
    """Pre-release stores hold RFC 9497 Finalize outputs: a hash of the element that tokens
    now are, which cannot be undone. The migration refuses, says why, and writes nothing."""
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, revision="0001")
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
        migrate.upgrade(engine, revision="0001")
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
        migrate.upgrade(engine, revision=start)
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


_GROWING = ("bindings", "numbers", "lifecycle_events", "orders")


def _seed_0003(engine: Engine) -> dict[str, bytes]:
    """A store at 0003 with a reissue's worth of rows in every growing table: two tokens,
    three bindings, an order and its feed entry for one of them."""
    t1, t2 = bytes([1]) * 32, bytes([2]) * 32
    with engine.begin() as conn:
        ex = conn.execute
        ex(
            text(
                "INSERT INTO principals (role, name, display_name, category, suspended,"
                " created_us, feed_head) VALUES ('carrier', 'cm', '', '', false, 1, 0),"
                " ('platform', 'acme', '', '', false, 1, 1), ('platform', 'beta', '', '',"
                " false, 1, 0)"
            )
        )
        for t in (t1, t2):
            ex(
                text(
                    "INSERT INTO numbers (token, key_id, carrier_pk, state, first_known_us,"
                    " last_effective_us, updated_us) VALUES (:t, 'k1', 1, 1, 1, 5, 5)"
                ),
                {"t": t},
            )
            ex(
                text(
                    "INSERT INTO lifecycle_events (token, key_id, carrier_pk, kind,"
                    " effective_us, recorded_us, applied) VALUES (:t, 'k1', 1, 2, 5, 6, true)"
                ),
                {"t": t},
            )
        for platform, t, ref in ((2, t1, b"a1"), (3, t1, b"b1"), (2, t2, b"a2")):
            ex(
                text(
                    "INSERT INTO bindings (platform_pk, key_id, token, account_ref, bound_us,"
                    " kind, state, bucket, digest, updated_us) VALUES (:p, 'k1', :t, :r, 3, 1,"
                    " 2, 7, :d, 4)"
                ),
                {"p": platform, "t": t, "r": ref, "d": bytes(32)},
            )
        ex(
            text(
                "INSERT INTO revocations (id, cause, carrier_pk, scope, created_us)"
                " VALUES ('rev-1', 1, 1, 0, 6)"
            )
        )
        binding_pk = ex(
            text("SELECT pk FROM bindings WHERE platform_pk = 2 AND account_ref = :r"),
            {"r": b"a2"},
        ).scalar_one()
        ex(
            text(
                "INSERT INTO orders (id, revocation_id, platform_pk, binding_pk, kind, cause,"
                " state, outcome, reason, created_us, deadline_us) VALUES ('order-1',"
                " 'rev-1', 2, :b, 1, 1, 1, 0, '', 6, 9)"
            ),
            {"b": binding_pk},
        )
        order_pk = ex(text("SELECT pk FROM orders")).scalar_one()
        ex(
            text(
                "INSERT INTO feed_events (platform_pk, seq, order_pk, created_us)"
                " VALUES (2, 1, :o, 6)"
            ),
            {"o": order_pk},
        )
    return {"t1": t1, "t2": t2}


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            "bindings": [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT pk, platform_pk, token, account_ref, state FROM bindings"
                        " ORDER BY pk"
                    )
                )
            ],
            "numbers": [
                tuple(r) for r in conn.execute(text("SELECT token, key_id FROM numbers ORDER BY 1"))
            ],
            "lifecycle_events": [
                tuple(r)
                for r in conn.execute(text("SELECT pk, token FROM lifecycle_events ORDER BY pk"))
            ],
            "orders": [
                tuple(r) for r in conn.execute(text("SELECT pk, id, binding_pk, state FROM orders"))
            ],
            "feed": _feed(conn),
        }


def _feed(conn: Connection) -> list[tuple[object, ...]]:
    """(platform pk, seq, order pk) of each feed entry: a table of its own before
    0015_feed_in_orders, each order's `feed_seq` since."""
    if "feed_events" in inspect(conn).get_table_names():
        sql = "SELECT platform_pk, seq, order_pk FROM feed_events ORDER BY 1, 2"
    else:
        sql = "SELECT platform_pk, feed_seq, pk FROM orders ORDER BY 1, 2"
    return [tuple(r) for r in conn.execute(text(sql))]


def test_rows_written_before_partitioning_survive_it(database_url: str) -> None:
    """Every growing table's rows come through 0008 and 0015 unchanged; orders gain their
    binding's token, and their feed entries' places; pks keep counting from where they
    were."""
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, revision="0003")
        tokens = _seed_0003(engine)
        before = _snapshot(engine)
        migrate.upgrade(engine)
        assert _snapshot(engine) == before
        with engine.begin() as conn:
            order_token = conn.execute(text("SELECT token FROM orders")).scalar_one()
            assert bytes(order_token) == tokens["t2"]
            conn.execute(
                text(
                    "INSERT INTO bindings (platform_pk, key_id, token, account_ref, bound_us,"
                    " kind, state, bucket, digest, updated_us) VALUES (2, 'k1', :t, 'new', 3,"
                    " 1, 2, 7, :d, 4)"
                ),
                {"t": tokens["t1"], "d": bytes(32)},
            )
            pks = [r[0] for r in conn.execute(text("SELECT pk FROM bindings ORDER BY pk"))]
        assert pks == sorted(set(pks)) and len(pks) == 4 and pks[-1] > pks[-2]
    finally:
        engine.dispose()


# One `numbind serve` starting on a store that needs migrating: it says it is ready, waits
# for the go, then migrates and prints (before, after).
_RACER = """
import sys, time
from pathlib import Path
from sqlalchemy import create_engine
from numbind.registry.storage import migrate
engine = create_engine(sys.argv[1])
Path(sys.argv[2] + ".ready").touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
print(*migrate.upgrade(engine))
"""


def test_processes_migrating_one_store_at_once_all_succeed(tmp_path: Path) -> None:
    """N processes started at once on a fresh PostgreSQL store: one migrates, the others
    wait for it and find the schema at head. Each used to run the migrations too, and all
    but one died on the others' tables (UniqueViolation on pg_type_typname_nsp_index)."""
    url = require_postgres()
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, f"{go}{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(Path(f"{go}{i}.ready").exists() for i in range(4)):
            assert time.monotonic() < deadline, "the racers did not start"
            time.sleep(0.01)
        for i in range(4):  # all at once, after their imports
            Path(f"{go}{i}").touch()
        results = [r.communicate(timeout=120) for r in racers]
    finally:
        for r in racers:
            r.kill()
    assert [r.returncode for r in racers] == [0] * 4, [err for _, err in results]
    head = migrate.head_revision()
    assert sorted(out.split() for out, _ in results) == [
        [head, head],
        [head, head],
        [head, head],
        ["None", head],
    ]
    engine = create_engine(url)
    try:
        assert migrate.current_revision(engine) == head
    finally:
        engine.dispose()
