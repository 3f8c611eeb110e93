"""Bindings and numbers: the growing tables platforms and carriers write."""

from __future__ import annotations

from numbind.registry.storage.models.base import Base, BigId
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column


class BindingRow(Base):
    """One account of one platform bound to one token."""

    __tablename__ = "bindings"
    __table_args__ = (
        # The upsert key of PublishBindings and the lookup for withdraw; token first, so
        # it also serves reissues and holder queries (every binding to one token, across
        # platforms). One index fewer to maintain on every insert, and on every row the
        # store re-key moves: a separate token index measured 28 of the ~60 us a re-keyed
        # row cost SQLite (each index entry of a random token dirties its own page).
        UniqueConstraint("token", "platform_pk", "account_ref", name="uq_bindings_key"),
        # Reconciliation: one platform's bindings in one token-prefix bucket, in order.
        Index("ix_bindings_platform_bucket", "platform_pk", "bucket"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    platform_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"))
    key_id: Mapped[str] = mapped_column(String(32))
    token: Mapped[bytes] = mapped_column(LargeBinary(32))
    account_ref: Mapped[bytes] = mapped_column(LargeBinary(64))
    bound_us: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(SmallInteger)
    # ACTIVE, REVOKING (an order is out), REVOKED, WITHDRAWN.
    state: Mapped[int] = mapped_column(SmallInteger)
    # The token's 16-bit bucket (protocol.digest.bucket16); coarser buckets are ranges of it.
    bucket: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the binding's canonical encoding; bucket digests XOR these.
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    updated_us: Mapped[int] = mapped_column(BigInteger)


class NumberRow(Base):
    """What carriers reported about one token: who serves it, whose tenure it is."""

    __tablename__ = "numbers"

    token: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    carrier_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"))
    # ACTIVE, DEACTIVATED, PORTING (after PORTED_OUT, before PORTED_IN).
    state: Mapped[int] = mapped_column(SmallInteger)
    tenure_start_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Latest REISSUED instant: answers reassigned-since without revealing it.
    last_reissued_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Earliest instant anything was reported: before it the registry knows nothing.
    first_known_us: Mapped[int] = mapped_column(BigInteger)
    # Latest effective_at applied; older events are recorded but superseded.
    last_effective_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)
