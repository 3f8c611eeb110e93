"""Lifecycle events and what they trigger: revocations, their orders, each platform's
feed, and the hub's fan-out of holder revocations to members."""

from __future__ import annotations

from numbind.registry.storage.models.base import Base, BigId
from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column


class LifecycleEventRow(Base):
    """Every lifecycle event as reported, applied or superseded (the audit trail)."""

    __tablename__ = "lifecycle_events"
    __table_args__ = (
        Index("ix_lifecycle_token_time", "token", "effective_us"),
        # The hub's log order: members follow it by sequence. Unique with the token, the
        # partition key (0008_partitions); the log head's row lock hands each seq out once.
        Index("ux_lifecycle_seq", "seq", "token", unique=True),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_id: Mapped[str] = mapped_column(String(32))
    carrier_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"))
    kind: Mapped[int] = mapped_column(SmallInteger)
    effective_us: Mapped[int] = mapped_column(BigInteger)
    recorded_us: Mapped[int] = mapped_column(BigInteger)
    applied: Mapped[bool] = mapped_column(Boolean)
    revocation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Position in the lifecycle log, gap-free and in commit order (LifecycleLogHeadRow).
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RevocationRow(Base):
    """A trigger: one holder request or one carrier report; its orders hang off it."""

    __tablename__ = "revocations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cause: Mapped[int] = mapped_column(SmallInteger)
    carrier_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"))
    # Holder requests only: the token and the carrier's pseudonym for the subscriber.
    token: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(128), nullable=True)
    scope: Mapped[int] = mapped_column(SmallInteger, default=0)
    created_us: Mapped[int] = mapped_column(BigInteger)
    # A single registry's carrier report: the last lifecycle-log sequence of the report;
    # its orders are all created once the local applier's cursor reaches it
    # (services.local_apply). NULL: complete when written.
    through_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OrderRow(Base):
    """One revocation order or notice for one binding at one platform, and its place in that
    platform's feed (the transactional outbox)."""

    __tablename__ = "orders"
    __table_args__ = (
        # Holder progress: all orders of one revocation, grouped by platform.
        Index("ix_orders_revocation", "revocation_id", "platform_pk"),
        # Open orders per binding (the holder view's "open revocation").
        Index("ix_orders_binding", "binding_pk"),
        # Open (unacked) orders by platform and deadline: the ops snapshot and redelivery.
        # Partial, and without `state`, so that an order's delivery mark writes no index
        # entry (a HOT update on PostgreSQL; migration 0011_open_orders).
        Index(
            "ix_orders_open",
            "platform_pk",
            "deadline_us",
            postgresql_where=text("acked_us IS NULL"),
            sqlite_where=text("acked_us IS NULL"),
        ),
        UniqueConstraint("id", "token", name="uq_orders_id"),
        # Each platform's feed: replay after a sequence number is a range scan of it. With
        # the token (the partition key) so it is unique per partition (0015_feed_in_orders).
        Index("ux_orders_feed", "platform_pk", "feed_seq", "token", unique=True),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # A UUID; unique with the token (the partition key), which a UUID4 makes unique alone.
    # Acks look orders up by id: the unique index's prefix.
    id: Mapped[str] = mapped_column(String(36))
    # A revocation's and a platform's, neither a foreign key (0016_orders_unchecked_refs):
    # each was an integrity trigger per row, a third of the cost of inserting a reissue's
    # orders. orders.append writes them with the revocation, from the bindings' platforms,
    # and neither revocations nor principals are ever deleted.
    revocation_id: Mapped[str] = mapped_column(String(36))
    platform_pk: Mapped[int] = mapped_column(Integer)
    binding_pk: Mapped[int] = mapped_column(BigId)
    # The binding's token, in the form its row holds: the partition key, shared with it.
    token: Mapped[bytes] = mapped_column(LargeBinary(32))
    # REVOKE or NUMBER_DEACTIVATED.
    kind: Mapped[int] = mapped_column(SmallInteger)
    cause: Mapped[int] = mapped_column(SmallInteger)
    # PENDING, DELIVERED, DONE, REJECTED (OVERDUE is derived from the deadline).
    state: Mapped[int] = mapped_column(SmallInteger)
    outcome: Mapped[int] = mapped_column(SmallInteger, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    tenure_start_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    deadline_us: Mapped[int] = mapped_column(BigInteger)
    delivered_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Its place in its platform's feed (the transactional outbox): gap-free per platform, in
    # the order the appending transactions took the platform's head (principals.feed_head).
    feed_seq: Mapped[int] = mapped_column(BigInteger)


class FanoutOutboxRow(Base):
    """The hub's record of a holder revocation still to reach (or reached) each member.

    Written in the revocation's own transaction, one row per binding-registry member, so a
    revocation is never lost between the hub's record and a member that is down: the
    fan-out delivers it at once and a retry loop delivers what is left when the member
    comes back. Members create its orders once, by revocation id.
    """

    __tablename__ = "fanout_outbox"
    __table_args__ = (
        # The retry loop: undelivered rows in order of their next attempt.
        Index("ix_fanout_outbox_due", "delivered_us", "next_attempt_us"),
    )

    revocation_id: Mapped[str] = mapped_column(ForeignKey("revocations.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    # What the member needs (token under its key, tenure start, scope, platform ids), as
    # canonical JSON written by the services layer; never an account_ref or a number.
    request: Mapped[str] = mapped_column(String(65536))
    created_us: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_us: Mapped[int] = mapped_column(BigInteger)
    delivered_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Orders the member created, once delivered.
    orders: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")
