"""principals pin their current client certificate

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 16:00:00.000000

`numbind admin reissue-bundle` issues a principal a new certificate; the registry must then
refuse the old one, though the CA signed both. Each principal keeps the SHA-256 of the DER
of the one certificate it may present. Principals registered before this revision have
none and are accepted with any certificate the CA issued them, as before, until their
first reissue.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cert_sha256", sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.drop_column("cert_sha256")
