"""principals carry a standing version

Revision ID: 0004_hardening
Revises: 0003
Create Date: 2026-11-28 11:00:00.000000

Authorisation used to happen once, at call start, so a suspended platform's open event
stream kept delivering. Every change of a principal's standing (suspension, resumption, a
new certificate or attestation key) now bumps `standing` in the same transaction; an open
stream re-reads it at least every second, so the change reaches every registry process
sharing the database, not only the one that made it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_hardening"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("standing", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.drop_column("standing")
