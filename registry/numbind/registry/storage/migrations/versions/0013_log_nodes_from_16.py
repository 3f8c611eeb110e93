"""the verifiable log stores subtree hashes of 16 leaves and more, not every subtree

`storage.log.append` used to store the hash of every complete subtree of two leaves or
more: about one `log_nodes` row per leaf, 200,000 in a 100,000-order reissue (an order leaf
and an ack leaf each). It now stores levels 4 and up (about one row per 8 leaves); a proof
computes the levels below from the leaves of the 16-leaf blocks it touches
(`storage.log.StoredTree`). This migration deletes the stored rows of levels 1-3, which
nothing reads any more.

Downgrade computes them again from the leaves, in index order, 4,096 leaves a query.

Revision ID: 0013_log_nodes_from_16
Revises: 0012_binding_room
Create Date: 2026-11-30 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from numbind.protocol.merkle import CompactRange, leaf_hash

revision: str = "0013_log_nodes_from_16"
down_revision: str | None = "0012_binding_room"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# storage.log.STORED_FROM_LEVEL when this migration was written: a migration keeps the
# value it was written for.
STORED_FROM_LEVEL = 4
# Leaves read per query on the way down.
_READ = 4096


def upgrade() -> None:
    op.execute(sa.text(f"DELETE FROM log_nodes WHERE level < {STORED_FROM_LEVEL}"))


def downgrade() -> None:
    """Levels 1-3, as storage.log stored them: every subtree of 2-8 leaves the tree closed,
    replayed leaf by leaf through merkle.CompactRange (which returns what each leaf closes)."""
    bind = op.get_bind()
    nodes = sa.table(
        "log_nodes",
        sa.column("level", sa.SmallInteger),
        sa.column("idx", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    size = int(bind.execute(sa.text("SELECT size FROM log_state WHERE id = 1")).scalar() or 0)
    edge = CompactRange()
    for start in range(0, size, _READ):
        rows = bind.execute(
            sa.text(
                "SELECT commitment FROM log_leaves WHERE idx >= :a AND idx < :b ORDER BY idx"
            ),
            {"a": start, "b": min(start + _READ, size)},
        ).all()
        out = [
            {"level": node.level, "idx": node.index, "hash": h}
            for (c,) in rows
            for node, h in edge.append(leaf_hash(bytes(c)))
            if 1 <= node.level < STORED_FROM_LEVEL
        ]
        if out:
            op.bulk_insert(nodes, out)
