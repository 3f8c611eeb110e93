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
back on downgrade. SQLite cannot drop a constraint in place, so the table is rebuilt as its
documented procedure says (www.sqlite.org/lang_altertable.html, "other kinds of table
schema changes"): the stored CREATE TABLE without (or, on downgrade, with) the two keys,
the rows copied, the old table dropped, the new one renamed, its indexes made again from
their stored SQL.

Revision ID: 0016_orders_unchecked_refs
Revises: 0015_feed_in_orders
Create Date: 2026-11-30 06:10:00.000000
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_orders_unchecked_refs"
down_revision: str | None = "0015_feed_in_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, referenced table, referenced column)
KEYS = (("revocation_id", "revocations", "id"), ("platform_pk", "principals", "pk"))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        _rebuild_sqlite(with_keys=False)
        return
    for fk in sa.inspect(conn).get_foreign_keys("orders"):
        if tuple(fk["constrained_columns"]) in {(c,) for c, _, _ in KEYS}:
            op.execute(f'ALTER TABLE orders DROP CONSTRAINT "{fk["name"]}"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _rebuild_sqlite(with_keys=True)
        return
    for column, table, key in KEYS:
        op.execute(
            f"ALTER TABLE orders ADD CONSTRAINT orders_{column}_fkey"
            f" FOREIGN KEY ({column}) REFERENCES {table} ({key})"
        )


def _rebuild_sqlite(*, with_keys: bool) -> None:
    conn = op.get_bind()
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'"
    ).scalar_one()
    index_sql = [
        r[0]
        for r in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders'"
            " AND sql IS NOT NULL"
        )
    ]
    # Without the keys: their clauses out. With them: in again, before the table's
    # unique constraint (where SQLAlchemy put them).
    body = re.sub(r",\s*FOREIGN KEY\s*\([^)]*\)\s*REFERENCES\s*\w+\s*\([^)]*\)", "", table_sql)
    if with_keys:
        keys = "".join(
            f", \n\tFOREIGN KEY({column}) REFERENCES {table} ({key})"
            for column, table, key in KEYS
        )
        body = body.replace(", \n\tCONSTRAINT uq_orders_id", f"{keys}, \n\tCONSTRAINT uq_orders_id")
        if "FOREIGN KEY" not in body:
            raise RuntimeError("0016_orders_unchecked_refs: orders' table SQL not as expected")
    new_sql = re.sub(r'^CREATE TABLE (IF NOT EXISTS )?"?orders"?', "CREATE TABLE orders_new", body)
    columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(orders)")]
    listed = ", ".join(columns)
    op.execute(new_sql)
    op.execute(f"INSERT INTO orders_new ({listed}) SELECT {listed} FROM orders")
    op.execute("DROP TABLE orders")
    op.execute("ALTER TABLE orders_new RENAME TO orders")
    for sql in index_sql:
        op.execute(sql)
