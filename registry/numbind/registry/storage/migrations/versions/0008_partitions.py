"""hash-partition the tables that grow with bindings by token (PostgreSQL)

On PostgreSQL, bindings, numbers, lifecycle_events, orders and feed_events become
declaratively partitioned tables, PARTITION BY HASH (token), with N partitions each (the
same N for all, so partition i of one holds the same tokens as partition i of every
other). Every primary and unique key includes token, the partition key, which is also what
a distributed engine (Citus, CockroachDB, YugabyteDB) needs to shard them by token:

    bindings          PRIMARY KEY (pk, token), UNIQUE (token, platform_pk, account_ref)
    numbers           PRIMARY KEY (token)
    lifecycle_events  PRIMARY KEY (pk, token), UNIQUE INDEX (seq, token)
    orders            PRIMARY KEY (pk, token), UNIQUE (id, token)   + token (the binding's)
    feed_events       PRIMARY KEY (platform_pk, seq, token)          + token (the order's)

Orders and feed entries gain the token of the binding they are about (and feed entries an
index on order_pk, to move them with their order when a re-key changes it); the foreign keys
orders.binding_pk -> bindings and feed_events.order_pk -> orders are dropped (a foreign
key into a partitioned table has to name its partition key; the storage layer writes the
rows together in one transaction). The pk sequences carry over, so pks stay unique.

N is the migration's parameter: `numbind admin migrate --partitions N` (or `admin init`'s),
else NUMBIND_PARTITIONS, else 16 (storage.partitions, which checks it). It is read only when
the tables are built: changing it later means dumping and reloading them.

Data survives: each table is rebuilt and its rows copied in one transaction. SQLite is
not partitioned; there the two new token columns are added and filled, and the two
foreign keys and orders' unique id are replaced the same way, keys otherwise unchanged.

Revision ID: 0008_partitions
Revises: 0007_shared_quota
Create Date: 2026-11-28 11:00:00
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from numbind.registry.storage import partitions

revision: str = "0008_partitions"
down_revision: str | None = "0007_shared_quota"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROWING = ("feed_events", "orders", "lifecycle_events", "bindings", "numbers")
_OLD = "{}_pre0007"


def partition_count() -> int:
    # storage.migrate.upgrade resolves and checks the count before it starts; the variable
    # and default here only serve a caller that runs Alembic's command itself.
    given = context.config.attributes.get("partitions")
    return partitions.count(None if given is None else int(given), os.environ)


# The new PostgreSQL tables: columns, then keys and indexes. Same columns and types as the
# models (tests/storage/test_migrations.py compares them).
_COLUMNS = {
    "bindings": """
        pk BIGINT NOT NULL DEFAULT nextval('bindings_pk_seq'),
        platform_pk INTEGER NOT NULL REFERENCES principals (pk),
        key_id VARCHAR(32) NOT NULL,
        token BYTEA NOT NULL,
        account_ref BYTEA NOT NULL,
        bound_us BIGINT NOT NULL,
        kind SMALLINT NOT NULL,
        state SMALLINT NOT NULL,
        bucket INTEGER NOT NULL,
        digest BYTEA NOT NULL,
        updated_us BIGINT NOT NULL,
        CONSTRAINT bindings_pkey PRIMARY KEY (pk, token),
        CONSTRAINT uq_bindings_key UNIQUE (token, platform_pk, account_ref)""",
    "numbers": """
        token BYTEA NOT NULL,
        key_id VARCHAR(32) NOT NULL,
        carrier_pk INTEGER NOT NULL REFERENCES principals (pk),
        state SMALLINT NOT NULL,
        tenure_start_us BIGINT,
        last_reissued_us BIGINT,
        first_known_us BIGINT NOT NULL,
        last_effective_us BIGINT NOT NULL,
        updated_us BIGINT NOT NULL,
        CONSTRAINT numbers_pkey PRIMARY KEY (token)""",
    "lifecycle_events": """
        pk BIGINT NOT NULL DEFAULT nextval('lifecycle_events_pk_seq'),
        token BYTEA NOT NULL,
        key_id VARCHAR(32) NOT NULL,
        carrier_pk INTEGER NOT NULL REFERENCES principals (pk),
        kind SMALLINT NOT NULL,
        effective_us BIGINT NOT NULL,
        recorded_us BIGINT NOT NULL,
        applied BOOLEAN NOT NULL,
        revocation_id VARCHAR(36),
        seq BIGINT,
        CONSTRAINT lifecycle_events_pkey PRIMARY KEY (pk, token)""",
    "orders": """
        pk BIGINT NOT NULL DEFAULT nextval('orders_pk_seq'),
        id VARCHAR(36) NOT NULL,
        revocation_id VARCHAR(36) NOT NULL REFERENCES revocations (id),
        platform_pk INTEGER NOT NULL REFERENCES principals (pk),
        binding_pk BIGINT NOT NULL,
        token BYTEA NOT NULL,
        kind SMALLINT NOT NULL,
        cause SMALLINT NOT NULL,
        state SMALLINT NOT NULL,
        outcome SMALLINT NOT NULL,
        reason VARCHAR(500) NOT NULL,
        tenure_start_us BIGINT,
        created_us BIGINT NOT NULL,
        deadline_us BIGINT NOT NULL,
        delivered_us BIGINT,
        acked_us BIGINT,
        CONSTRAINT orders_pkey PRIMARY KEY (pk, token),
        CONSTRAINT uq_orders_id UNIQUE (id, token)""",
    "feed_events": """
        platform_pk INTEGER NOT NULL REFERENCES principals (pk),
        seq BIGINT NOT NULL,
        order_pk BIGINT NOT NULL,
        token BYTEA NOT NULL,
        created_us BIGINT NOT NULL,
        CONSTRAINT feed_events_pkey PRIMARY KEY (platform_pk, seq, token)""",
}
_INDEXES = {
    "bindings": {"ix_bindings_platform_bucket": "platform_pk, bucket"},
    "numbers": {},
    "lifecycle_events": {"ix_lifecycle_token_time": "token, effective_us"},
    "orders": {
        "ix_orders_revocation": "revocation_id, platform_pk",
        "ix_orders_binding": "binding_pk",
        "ix_orders_state_deadline": "state, deadline_us",
        "ix_orders_platform_state": "platform_pk, state",
    },
    "feed_events": {"ix_feed_events_order": "order_pk"},
}
# Unique indexes that are not constraints (the models declare them as indexes).
_UNIQUE_INDEXES = {"lifecycle_events": {"ux_lifecycle_seq": "seq, token"}}
_SEQUENCES = {"bindings": "pk", "lifecycle_events": "pk", "orders": "pk"}
# How each new table is filled from the old ones (orders and feed entries take the token
# of the binding they are about).
_COPY = {
    "bindings": "SELECT pk, platform_pk, key_id, token, account_ref, bound_us, kind, state,"
    " bucket, digest, updated_us FROM bindings_pre0007",
    "numbers": "SELECT token, key_id, carrier_pk, state, tenure_start_us, last_reissued_us,"
    " first_known_us, last_effective_us, updated_us FROM numbers_pre0007",
    "lifecycle_events": "SELECT pk, token, key_id, carrier_pk, kind, effective_us,"
    " recorded_us, applied, revocation_id, seq FROM lifecycle_events_pre0007",
    "orders": "SELECT o.pk, o.id, o.revocation_id, o.platform_pk, o.binding_pk, b.token,"
    " o.kind, o.cause, o.state, o.outcome, o.reason, o.tenure_start_us, o.created_us,"
    " o.deadline_us, o.delivered_us, o.acked_us FROM orders_pre0007 o"
    " JOIN bindings_pre0007 b ON b.pk = o.binding_pk",
    "feed_events": "SELECT f.platform_pk, f.seq, f.order_pk, b.token, f.created_us"
    " FROM feed_events_pre0007 f JOIN orders_pre0007 o ON o.pk = f.order_pk"
    " JOIN bindings_pre0007 b ON b.pk = o.binding_pk",
}


def _column_names(table: str) -> str:
    cols = [
        line.split()[0]
        for line in _COLUMNS[table].strip().splitlines()
        if not line.strip().startswith("CONSTRAINT")
    ]
    return ", ".join(cols)


def _upgrade_postgresql() -> None:
    n = partition_count()
    conn = op.get_bind()
    insp = sa.inspect(conn)
    # Set the old tables aside under other names, their constraints and indexes dropped
    # (those names are the new tables' too); foreign keys between them go first.
    for table in GROWING:
        for fk in insp.get_foreign_keys(table):
            op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{fk["name"]}"')
    for table in GROWING:
        for unique in insp.get_unique_constraints(table):
            op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{unique["name"]}"')
        for index in insp.get_indexes(table):
            if not index.get("duplicates_constraint"):
                op.execute(f'DROP INDEX "{index["name"]}"')
        pk_name = insp.get_pk_constraint(table)["name"]
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{pk_name}"')
        op.execute(f"ALTER TABLE {table} RENAME TO {_OLD.format(table)}")
        if table in _SEQUENCES:
            op.execute(f"ALTER SEQUENCE {table}_{_SEQUENCES[table]}_seq OWNED BY NONE")
    for table in reversed(GROWING):
        op.execute(f"CREATE TABLE {table} ({_COLUMNS[table]}\n) PARTITION BY HASH (token)")
        for i in range(n):
            op.execute(
                f"CREATE TABLE {table}_p{i} PARTITION OF {table}"
                f" FOR VALUES WITH (MODULUS {n}, REMAINDER {i})"
            )
        for name, cols in _INDEXES[table].items():
            op.execute(f"CREATE INDEX {name} ON {table} ({cols})")
        for name, cols in _UNIQUE_INDEXES.get(table, {}).items():
            op.execute(f"CREATE UNIQUE INDEX {name} ON {table} ({cols})")
        if table in _SEQUENCES:
            col = _SEQUENCES[table]
            op.execute(f"ALTER SEQUENCE {table}_{col}_seq OWNED BY {table}.{col}")
    for table in reversed(GROWING):
        op.execute(f"INSERT INTO {table} ({_column_names(table)}) {_COPY[table]}")
    for table in GROWING:
        op.execute(f"DROP TABLE {_OLD.format(table)}")
    for table in reversed(GROWING):
        op.execute(f"ANALYZE {table}")


def _upgrade_sqlite() -> None:
    # The log's sequence is unique with the token on both backends (one model).
    op.execute("DROP INDEX ux_lifecycle_seq")
    op.execute("CREATE UNIQUE INDEX ux_lifecycle_seq ON lifecycle_events (seq, token)")
    # SQLite cannot drop a constraint in place: rebuild the two tables (their indexes'
    # names are global, so the old ones go first), feed_events first since it referred to
    # orders.
    op.execute("DROP INDEX ix_orders_revocation")
    op.execute("DROP INDEX ix_orders_binding")
    op.execute("DROP INDEX ix_orders_state_deadline")
    op.execute("DROP INDEX ix_orders_platform_state")
    op.create_table(
        "feed_events_new",
        sa.Column("platform_pk", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(["platform_pk"], ["principals.pk"]),
        sa.PrimaryKeyConstraint("platform_pk", "seq"),
    )
    op.execute(
        "INSERT INTO feed_events_new (platform_pk, seq, order_pk, created_us, token)"
        " SELECT f.platform_pk, f.seq, f.order_pk, f.created_us, b.token FROM feed_events f"
        " JOIN orders o ON o.pk = f.order_pk JOIN bindings b ON b.pk = o.binding_pk"
    )
    op.execute("DROP TABLE feed_events")
    op.execute("ALTER TABLE feed_events_new RENAME TO feed_events")
    op.create_index("ix_feed_events_order", "feed_events", ["order_pk"])
    op.create_table(
        "orders_new",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("revocation_id", sa.String(length=36), nullable=False),
        sa.Column("platform_pk", sa.Integer(), nullable=False),
        sa.Column("binding_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("cause", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("tenure_start_us", sa.BigInteger(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("deadline_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.Column("acked_us", sa.BigInteger(), nullable=True),
        sa.Column("token", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(["platform_pk"], ["principals.pk"]),
        sa.ForeignKeyConstraint(["revocation_id"], ["revocations.id"]),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id", "token", name="uq_orders_id"),
    )
    op.execute(
        "INSERT INTO orders_new (pk, id, revocation_id, platform_pk, binding_pk, kind, cause,"
        " state, outcome, reason, tenure_start_us, created_us, deadline_us, delivered_us,"
        " acked_us, token) SELECT o.pk, o.id, o.revocation_id, o.platform_pk, o.binding_pk,"
        " o.kind, o.cause, o.state, o.outcome, o.reason, o.tenure_start_us, o.created_us,"
        " o.deadline_us, o.delivered_us, o.acked_us, b.token FROM orders o"
        " JOIN bindings b ON b.pk = o.binding_pk"
    )
    op.execute("DROP TABLE orders")
    op.execute("ALTER TABLE orders_new RENAME TO orders")
    for name, cols in _INDEXES["orders"].items():
        op.create_index(name, "orders", [c.strip() for c in cols.split(",")])


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    raise NotImplementedError(
        "0008_partitions has no downgrade: restore the dump taken before upgrading"
    )
