"""the hub's outbox of holder revocations for federation members

Revision ID: 0009_fanout
Revises: 0008_partitions
Create Date: 2026-11-28 11:00:00.000000

A holder revocation at the hub of a federation is recorded with one row per binding
registry member in the same transaction; the fan-out delivers it at once, and a retry loop
delivers what a member missed while it was down (issue 11, item 5).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_fanout"
down_revision: str | None = "0008_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fanout_outbox",
        sa.Column("revocation_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=63), nullable=False),
        sa.Column("request", sa.String(length=65536), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.Column("orders", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["revocation_id"], ["revocations.id"]),
        sa.PrimaryKeyConstraint("revocation_id", "member_id"),
    )
    op.create_index(
        "ix_fanout_outbox_due", "fanout_outbox", ["delivered_us", "next_attempt_us"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_fanout_outbox_due", table_name="fanout_outbox")
    op.drop_table("fanout_outbox")
