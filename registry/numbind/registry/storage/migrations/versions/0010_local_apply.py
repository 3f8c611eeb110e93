"""a carrier report's orders applied after its commit, in chunks

Revision ID: 0010_local_apply
Revises: 0009_fanout
Create Date: 2026-11-28 17:00:00.000000

A single registry's carrier report commits its triggers (number states, lifecycle events,
the revocation) and a local applier creates the orders afterwards, in chunks committed
with a cursor (issue 14: the first event at a platform within seconds of the report).
`revocations.through_seq` is the last lifecycle-log sequence of the report that made the
revocation: the revocation is complete once the applier's cursor reaches it (NULL: a
holder request, a member's or hub's revocation, or one written before this revision —
complete when written).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_local_apply"
down_revision: str | None = "0009_fanout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("revocations", sa.Column("through_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revocations") as batch:
        batch.drop_column("through_seq")
