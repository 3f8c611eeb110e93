"""orders' revocation and platform are no longer foreign keys

Each foreign key is an integrity trigger per inserted row: a lookup of the referenced row
that also locks it (FOR KEY SHARE). A reissue inserts 100,000 orders, so 200,000 such
checks (pg_stat_statements over bench.reissue: 210,303 calls). Inserting a copy of those
100,000 orders took 1.79-1.83 s with the two keys and 1.18-1.27 s without (three runs each,
one transaction, rolled back): a third of the insert.

What they guarded is guarded where the orders are written: orders.append takes the
revocation id of the revocation written in the same transaction (or applied from the hub's
log with it) and the platform of each order's binding, whose own foreign key into
principals stays; neither revocations nor principals are ever deleted.

PostgreSQL: the two constraints are dropped (their names read from the catalog) and added
back on downgrade. SQLite cannot drop a constraint in place: Alembic's batch mode rebuilds
the table without (or, on downgrade, with) them, rows and indexes copied, the partial
index's predicate included (tests/storage/test_order_refs.py).

Revision ID: 0016_orders_unchecked_refs
Revises: 0015_feed_in_orders
Create Date: 2026-11-30 06:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_orders_unchecked_refs"
down_revision: str | None = "0015_feed_in_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, referenced table, referenced column)
KEYS = (("revocation_id", "revocations", "id"), ("platform_pk", "principals", "pk"))


# SQLite's foreign keys have no names: the batch names them by this convention to drop them.
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        with op.batch_alter_table("orders", naming_convention=_NAMES) as batch:
            for column, _, _ in KEYS:
                batch.drop_constraint(f"fk_orders_{column}", type_="foreignkey")
        return
    for fk in sa.inspect(conn).get_foreign_keys("orders"):
        if tuple(fk["constrained_columns"]) in {(c,) for c, _, _ in KEYS}:
            op.execute(f'ALTER TABLE orders DROP CONSTRAINT "{fk["name"]}"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("orders") as batch:
            for column, table, key in KEYS:
                batch.create_foreign_key(f"fk_orders_{column}", table, [column], [key])
        return
    for column, table, key in KEYS:
        op.execute(
            f"ALTER TABLE orders ADD CONSTRAINT orders_{column}_fkey"
            f" FOREIGN KEY ({column}) REFERENCES {table} ({key})"
        )
