"""token quotas in a shared bucket row per principal

Revision ID: 0007_shared_quota
Revises: 0006_replication
Create Date: 2026-11-28 11:00:00.000000

Token-evaluation quotas were token buckets in each registry process's memory, so N
processes behind a load balancer granted a principal N times its rate. The bucket now lives
in this table and is taken with one conditional UPDATE, so every process spends from the
same bucket (see storage.quota).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_shared_quota"
down_revision: str | None = "0006_replication"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_buckets",
        sa.Column("principal_pk", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["principal_pk"], ["principals.pk"]),
        sa.PrimaryKeyConstraint("principal_pk"),
    )


def downgrade() -> None:
    op.drop_table("quota_buckets")
