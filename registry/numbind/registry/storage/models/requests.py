"""Per-request bookkeeping: idempotent replies, attestation nonces, usage and quota."""

from __future__ import annotations

from numbind.registry.storage.models.base import Base
from sqlalchemy import BigInteger, Double, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column


class IdempotencyRow(Base):
    """The first answer to each (principal, method, request id), replayed on retries."""

    __tablename__ = "idempotency"

    principal_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"), primary_key=True)
    method: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # SHA-256 of the request body without its request id: tells a retry from a reuse.
    body_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    created_us: Mapped[int] = mapped_column(BigInteger)


class AttestationNonceRow(Base):
    """Nonces of accepted attestations, kept until the attestation would expire anyway."""

    __tablename__ = "attestation_nonces"
    __table_args__ = (Index("ix_nonces_expires", "expires_us"),)

    carrier_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"), primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(64), primary_key=True)
    expires_us: Mapped[int] = mapped_column(BigInteger)


class UsageRow(Base):
    """Per-principal, per-UTC-day counters (token evaluations, reassigned checks)."""

    __tablename__ = "usage"

    principal_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens_evaluated: Mapped[int] = mapped_column(BigInteger, default=0)
    reassigned_checks: Mapped[int] = mapped_column(BigInteger, default=0)


class QuotaBucketRow(Base):
    """A principal's token-evaluation bucket, shared by every registry process."""

    __tablename__ = "quota_buckets"

    principal_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    updated_us: Mapped[int] = mapped_column(BigInteger)
