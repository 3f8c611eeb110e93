"""more room on the orders' pages: fillfactor 50 (PostgreSQL), so every delivery mark is HOT

0011_open_orders made an order's delivery mark touch no indexed column and left 30 % of each
page free (fillfactor 70, from a microbenchmark of marks and acks in sequence). In a
full-size reissue (bench.reissue, pg_stat_user_tables over the window) only 69-76 % of the
100,000 delivery marks were then heap-only: the orders' pages fill with the versions the
marks and the acks (not HOT: `acked_us` leaves the partial index) write while the
applier's and the streams' transactions keep the dead ones from being pruned.

With half of each page free, all 100,000 were HOT in three runs, and the marks' statements
took 1.42-1.70 s of the window against 3.07-3.26 s; the orders' COPY took 3.73-4.10 s
against 3.63-3.81 s (more pages), and the window wrote 2.19-2.21 M WAL records against
2.36-2.41 M. The price is 37 % more heap pages for orders than at 70 (6,600 orders: 2.85 MB
against 2.08 MB).

As with 0011, the setting applies to pages written from now on. SQLite: nothing changes.

Revision ID: 0014_orders_room
Revises: 0013_log_nodes_from_16
Create Date: 2026-11-30 04:20:00.000000
"""

from collections.abc import Sequence

from alembic import op
from numbind.registry.storage.migrate import set_fillfactor

revision: str = "0014_orders_room"
down_revision: str | None = "0013_log_nodes_from_16"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 50
# 0011_open_orders' setting, which a downgrade restores.
BEFORE = 70


def upgrade() -> None:
    set_fillfactor(op.get_bind(), "orders", FILLFACTOR)  # nothing on SQLite


def downgrade() -> None:
    set_fillfactor(op.get_bind(), "orders", BEFORE)
