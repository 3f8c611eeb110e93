"""the verifiable log stores subtree hashes of 16 leaves and more, not every subtree

`storage.log.append` used to store the hash of every complete subtree of two leaves or
more: about one `log_nodes` row per leaf, 200,000 in a 100,000-order reissue (an order leaf
and an ack leaf each). It now stores levels 4 and up (about one row per 8 leaves); a proof
computes the levels below from the leaves of the 16-leaf blocks it touches
(`storage.log.StoredTree`). This migration deletes the stored rows of levels 1-3, which
nothing reads any more.

Downgrade computes them again from the leaves, in index order, a block at a time.

Revision ID: 0013_log_nodes_from_16
Revises: 0012_binding_room
Create Date: 2026-11-30 03:10:00.000000
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_log_nodes_from_16"
down_revision: str | None = "0012_binding_room"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# storage.log.STORED_FROM_LEVEL when this migration was written: a migration keeps the
# value it was written for.
STORED_FROM_LEVEL = 4
_BLOCK = 1 << STORED_FROM_LEVEL
# Leaves read per query on the way down: whole blocks.
_READ = 4096


def upgrade() -> None:
    op.execute(sa.text(f"DELETE FROM log_nodes WHERE level < {STORED_FROM_LEVEL}"))


def downgrade() -> None:
    """Levels 1-3 of every complete block and of the last, partial one (RFC 9162 hashes:
    a leaf is SHA-256(0x00 || data), a node SHA-256(0x01 || left || right))."""
    bind = op.get_bind()
    nodes = sa.table(
        "log_nodes",
        sa.column("level", sa.SmallInteger),
        sa.column("idx", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    size = int(bind.execute(sa.text("SELECT size FROM log_state WHERE id = 1")).scalar() or 0)
    for start in range(0, size, _READ):
        rows = bind.execute(
            sa.text(
                "SELECT commitment FROM log_leaves WHERE idx >= :a AND idx < :b ORDER BY idx"
            ),
            {"a": start, "b": min(start + _READ, size)},
        ).all()
        level = [hashlib.sha256(b"\x00" + bytes(c)).digest() for (c,) in rows]
        out: list[dict[str, object]] = []
        for lv in range(1, STORED_FROM_LEVEL):
            level = [
                hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
                for i in range(0, len(level) - 1, 2)
            ]
            first = start >> lv
            out += [{"level": lv, "idx": first + i, "hash": h} for i, h in enumerate(level)]
        if out:
            op.bulk_insert(nodes, out)
