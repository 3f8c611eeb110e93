"""room on the bindings' pages for their state changes: fillfactor 85 (PostgreSQL)

A reissue changes each revoked binding's row twice: REVOKING when its order is written,
REVOKED (or ACTIVE again) when the order is acked. No index holds `state` or `updated_us`,
so with room on the row's page each change can be a heap-only (HOT) update: the new
version goes on the same page and none of the three indexes (the primary key, the
(token, platform_pk, account_ref) key, the reconciliation bucket) gets an entry. Bindings
are written by PublishBindings packed full (fillfactor 100). A page then has room only
for what pruning frees: in a full-size reissue (bench.reissue, pg_stat_user_tables over
the window) 84 % of the binding updates were HOT, and the first change of a row on a full
page moved it and wrote three index entries at random places of 1 M-entry indexes.

Measured. One partition of 63,550 bindings, 6,500 changed twice, one UPDATE each: packed,
0 of 13,000 changes HOT, 128 and 133 ms; fillfactor 90, 89 % HOT, 54 and 34 ms; fillfactor
85, 98 % HOT, 39 and 41 ms. The full-size reissue, two runs each way: 99.8 % HOT against
84 %, the window's binding updates 2.80-2.94 s of statement time against 4.14-5.26 s.
The price is 17 % more heap pages (74,640 bindings: 14.6 MB against 12.5 MB), and
publishing 200,000 new bindings at 1 M rows ran at 40,472 and 40,502 rows/s against
43,392 and 46,182 (bench.scale --storage-only).

The fillfactor applies to pages written from now on: an existing store gets the room as
its bindings are rewritten (or at once with `VACUUM FULL bindings_pN`, which locks the
partition). SQLite has no fillfactor and no HOT: nothing changes there.

Revision ID: 0012_binding_room
Revises: 0011_open_orders
Create Date: 2026-11-30 03:00:00.000000
"""

from collections.abc import Sequence

from alembic import op
from numbind.registry.storage.migrate import set_fillfactor

revision: str = "0012_binding_room"
down_revision: str | None = "0011_open_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 85


def upgrade() -> None:
    set_fillfactor(op.get_bind(), "bindings", FILLFACTOR)  # nothing on SQLite


def downgrade() -> None:
    set_fillfactor(op.get_bind(), "bindings", None)
