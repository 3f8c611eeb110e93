"""the hub's ordered lifecycle log, and replication positions

Revision ID: 0006_replication
Revises: 0003
Create Date: 2026-11-28 11:00:00.000000

Members follow the hub's lifecycle log by sequence. `lifecycle_events.seq` is gap-free and
in commit order: it is handed out from `lifecycle_log_head` under a row lock in the
transaction that records the events (a `pk` is neither: PostgreSQL hands out sequence
values before commit, and a rollback leaves a gap). Existing events get 1..n in `pk` order.
A member keeps its cursor in `replication_cursor`; the hub keeps each member's last ack in
`replication_acks`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_replication"
down_revision: str | None = "0005_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lifecycle_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.create_index("ux_lifecycle_seq", ["seq"], unique=True)
    head = op.create_table(
        "lifecycle_log_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.BigInteger(), nullable=False),
        sa.Column("head_recorded_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT pk, recorded_us FROM lifecycle_events ORDER BY pk"))
    n = 0
    last_us = 0
    for pk, recorded_us in rows.fetchall():
        n += 1
        last_us = recorded_us
        conn.execute(
            sa.text("UPDATE lifecycle_events SET seq = :seq WHERE pk = :pk"), {"seq": n, "pk": pk}
        )
    op.bulk_insert(head, [{"id": 1, "head": n, "head_recorded_us": last_us}])
    op.create_table(
        "replication_cursor",
        sa.Column("source", sa.String(length=63), nullable=False),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_recorded_us", sa.BigInteger(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_recorded_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "replication_acks",
        sa.Column("member", sa.String(length=63), nullable=False),
        sa.Column("acked_seq", sa.BigInteger(), nullable=False),
        sa.Column("acked_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("member"),
    )


def downgrade() -> None:
    op.drop_table("replication_acks")
    op.drop_table("replication_cursor")
    op.drop_table("lifecycle_log_head")
    with op.batch_alter_table("lifecycle_events", schema=None) as batch_op:
        batch_op.drop_index("ux_lifecycle_seq")
        batch_op.drop_column("seq")
