"""re-keyable tokens: 32-byte elements, the store key, deltas and re-keys

Tokens change from the 64-byte RFC 9497 Finalize output to the 32-byte unblinded element
(issue 9). A hash cannot be turned back into the element it hashed, so a store that already
holds 64-byte tokens cannot be converted: this migration refuses it, naming the tables, and
writes nothing. Such stores only exist from pre-release builds; start a fresh store and have
platforms publish and carriers report again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from numbind.registry.errors import FailedPrecondition

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TOKEN_TABLES = ("numbers", "bindings", "lifecycle_events", "revocations")


def _refuse_old_tokens() -> None:
    conn = op.get_bind()
    held = {
        table: conn.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE token IS NOT NULL")
        ).scalar_one()
        for table in _TOKEN_TABLES
    }
    held = {t: n for t, n in held.items() if n}
    if held:
        counts = ", ".join(f"{t}: {n} rows" for t, n in held.items())
        raise FailedPrecondition(
            "this store holds 64-byte tokens from a pre-release numbind (" + counts + "). "
            "Tokens are now the 32-byte unblinded VOPRF element, and a 64-byte token is a "
            "one-way hash of it, so they cannot be converted. Nothing was changed: keep "
            "running the old release on this store, or start a fresh store (a new data dir "
            "or database) and have platforms publish and carriers report again."
        )


def upgrade() -> None:
    _refuse_old_tokens()
    op.create_table(
        "store_state",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("store_key_id", sa.String(length=32), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "key_deltas",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("to_key_id", sa.String(length=32), nullable=False),
        sa.Column("delta", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "rekeys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("from_key_id", sa.String(length=32), nullable=False),
        sa.Column("to_key_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("table_no", sa.SmallInteger(), nullable=False),
        sa.Column("cursor", sa.LargeBinary(length=64), nullable=True),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("started_us", sa.BigInteger(), nullable=False),
        sa.Column("finished_us", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger(), nullable=True),
        sa.Column("run_started_us", sa.BigInteger(), nullable=True),
        sa.Column("run_rows_base", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The tables are empty (checked above), so the new NOT NULL column needs no default.
    with op.batch_alter_table("lifecycle_events") as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=False))
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=64), type_=sa.LargeBinary(length=32)
        )
    with op.batch_alter_table("revocations") as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=64), type_=sa.LargeBinary(length=32)
        )
    with op.batch_alter_table("numbers") as batch_op:
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=64), type_=sa.LargeBinary(length=32)
        )
    # One token-first unique key serves upserts and lookups by token alike, so the store
    # re-key (and every insert) maintains one index fewer per row.
    with op.batch_alter_table("bindings") as batch_op:
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=64), type_=sa.LargeBinary(length=32)
        )
        batch_op.drop_index("ix_bindings_token")
        batch_op.drop_constraint("uq_bindings_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_bindings_key", ["token", "platform_pk", "account_ref"]
        )
    # The store key starts as the active key, if the store has one yet.
    op.execute(
        "INSERT INTO store_state (id, store_key_id, epoch) VALUES (1, "
        "(SELECT key_id FROM token_keys WHERE state = 1), 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("bindings") as batch_op:
        batch_op.drop_constraint("uq_bindings_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_bindings_key", ["platform_pk", "token", "account_ref"]
        )
        batch_op.create_index("ix_bindings_token", ["token"], unique=False)
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=32), type_=sa.LargeBinary(length=64)
        )
    with op.batch_alter_table("numbers") as batch_op:
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=32), type_=sa.LargeBinary(length=64)
        )
    with op.batch_alter_table("revocations") as batch_op:
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=32), type_=sa.LargeBinary(length=64)
        )
        batch_op.drop_column("key_id")
    with op.batch_alter_table("lifecycle_events") as batch_op:
        batch_op.alter_column(
            "token", existing_type=sa.LargeBinary(length=32), type_=sa.LargeBinary(length=64)
        )
        batch_op.drop_column("key_id")
    op.drop_table("rekeys")
    op.drop_table("key_deltas")
    op.drop_table("store_state")
