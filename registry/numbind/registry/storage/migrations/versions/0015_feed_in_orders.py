"""each order carries its place in its platform's feed; the feed_events table goes

Every order had exactly one feed entry, written in the same transaction: (platform_pk, seq,
order_pk, token, created_us), where all but `seq` repeat the order's own columns. A
reissue's window wrote 100,000 such rows (a heap tuple and two index entries each, 1.3-1.5 s
of PostgreSQL's time in `COPY` alone, pg_stat_statements over bench.reissue), and every
page a stream read joined each entry back to its order by primary key.

Now `orders.feed_seq` is that place, and a unique index (platform_pk, feed_seq, token) is
what a replay scans: the same key feed_events' primary key was, token included so the
index stays unique per partition and a distributed engine can shard orders by token as
before. No update writes `feed_seq`, so a delivery mark stays a heap-only update.

Data survives both ways. Upgrade: each order takes its entry's sequence (by order pk; pks
are unique across partitions), then the table is dropped. Downgrade: feed_events is built
again, on PostgreSQL hash-partitioned by token with as many partitions as orders has, and
filled from the orders.

SQLite cannot add a NOT NULL column without a default: there the column is added with
DEFAULT 0, which no write uses (storage.orders sets every order's place).

Revision ID: 0015_feed_in_orders
Revises: 0014_orders_room
Create Date: 2026-11-30 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from numbind.registry.storage.migrate import partitions_of

revision: str = "0015_feed_in_orders"
down_revision: str | None = "0014_orders_room"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FEED_INDEX = "CREATE UNIQUE INDEX ux_orders_feed ON orders (platform_pk, feed_seq, token)"


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        op.execute("ALTER TABLE orders ADD COLUMN feed_seq BIGINT")
        op.execute(
            "UPDATE orders AS o SET feed_seq = f.seq FROM feed_events AS f WHERE f.order_pk = o.pk"
        )
        op.execute("ALTER TABLE orders ALTER COLUMN feed_seq SET NOT NULL")
    else:
        op.execute("ALTER TABLE orders ADD COLUMN feed_seq BIGINT NOT NULL DEFAULT 0")
        op.execute(
            "UPDATE orders SET feed_seq ="
            " (SELECT f.seq FROM feed_events AS f WHERE f.order_pk = orders.pk)"
        )
    op.execute(_FEED_INDEX)
    op.execute("DROP TABLE feed_events")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        n = len(partitions_of(conn, "orders"))
        op.execute(
            "CREATE TABLE feed_events ("
            " platform_pk INTEGER NOT NULL REFERENCES principals (pk),"
            " seq BIGINT NOT NULL, order_pk BIGINT NOT NULL, token BYTEA NOT NULL,"
            " created_us BIGINT NOT NULL,"
            " CONSTRAINT feed_events_pkey PRIMARY KEY (platform_pk, seq, token))"
            " PARTITION BY HASH (token)"
        )
        for i in range(n):
            op.execute(
                f"CREATE TABLE feed_events_p{i} PARTITION OF feed_events"
                f" FOR VALUES WITH (MODULUS {n}, REMAINDER {i})"
            )
    else:
        op.create_table(
            "feed_events",
            sa.Column("platform_pk", sa.Integer(), nullable=False),
            sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("order_pk", sa.Integer(), nullable=False),
            sa.Column("created_us", sa.BigInteger(), nullable=False),
            sa.Column("token", sa.LargeBinary(length=32), nullable=False),
            sa.ForeignKeyConstraint(["platform_pk"], ["principals.pk"]),
            sa.PrimaryKeyConstraint("platform_pk", "seq"),
        )
    op.create_index("ix_feed_events_order", "feed_events", ["order_pk"])
    op.execute(
        "INSERT INTO feed_events (platform_pk, seq, order_pk, token, created_us)"
        " SELECT platform_pk, feed_seq, pk, token, created_us FROM orders"
    )
    op.execute("DROP INDEX ux_orders_feed")
    op.drop_column("orders", "feed_seq")
