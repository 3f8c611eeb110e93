"""open orders found by one partial index; an order's delivery mark is a HOT update

Revision ID: 0011_open_orders
Revises: 0010_local_apply
Create Date: 2026-11-29 22:40:00.000000

An order's row changes twice after it is written: delivered (state, delivered_us), then
acked (state, outcome, reason, acked_us). `ix_orders_state_deadline` and
`ix_orders_platform_state` held `state`, so each change wrote a new entry in all six of the
row's indexes: in a full-size PostgreSQL reissue the two updates took 17 s of the
statements' 50 s (pg_stat_statements). The readers of those indexes want open orders only:
the ops snapshot (per platform and state, with the overdue ones) and redelivery (one
platform's delivered, unacked orders). One partial index, `ix_orders_open (platform_pk,
deadline_us) WHERE acked_us IS NULL`, serves both, and names neither `state` nor
`delivered_us`, so the delivery mark no longer touches an index: with room on the page
(fillfactor 70 on PostgreSQL's partitions) it is a heap-only (HOT) update. The ack still
writes index entries (`acked_us` leaves the partial index), in four indexes instead of six.

An order is acked exactly when `acked_us` is set (storage.order_acks writes both), so
`acked_us IS NULL` is the open orders; the readers also keep their `state` filter.

The fillfactor applies to pages written from now on. SQLite has no fillfactor and no HOT;
there the indexes change the same way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from numbind.registry.storage.migrate import set_fillfactor

revision: str = "0011_open_orders"
down_revision: str | None = "0010_local_apply"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Room for a row's two later versions on its own page (a microbenchmark of 100,000
# orders, delivered then acked: 2.15 s and 4.85 s at 70, 2.82 s and 6.23 s packed).
FILLFACTOR = 70
_OPEN = "acked_us IS NULL"


def upgrade() -> None:
    op.drop_index("ix_orders_state_deadline", table_name="orders")
    op.drop_index("ix_orders_platform_state", table_name="orders")
    op.create_index(
        "ix_orders_open",
        "orders",
        ["platform_pk", "deadline_us"],
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )
    set_fillfactor(op.get_bind(), "orders", FILLFACTOR)


def downgrade() -> None:
    set_fillfactor(op.get_bind(), "orders", None)
    op.drop_index("ix_orders_open", table_name="orders")
    op.create_index("ix_orders_platform_state", "orders", ["platform_pk", "state"])
    op.create_index("ix_orders_state_deadline", "orders", ["state", "deadline_us"])
