"""The schema, as SQLAlchemy 2.0 typed mappings. Alembic migrations are written from it.

Conventions, and why:
- Every instant is an integer of microseconds since the Unix epoch (`*_us`): exact, fast to
  compare and index on every backend, and free of SQLite's text-datetime quirks.
- Small enums are small integers whose values live in `registry.domain.types`.
- Principals get an integer surrogate key so the big tables (bindings, orders, feed) carry
  4 bytes per row rather than a string id.
- A token is 32 bytes (a ristretto255 element) and every row holding one names its key id:
  after a rotation the re-key moves rows from the old key to the new one in place, and
  `key_id` is what says which form a row is in (see `registry.rekey`).
- The tables that grow with bindings (bindings, numbers, lifecycle_events, orders,
  feed_events) all hold a token, and on PostgreSQL they are hash-partitioned by it
  (migration 0008_partitions). A partitioned table's primary and unique keys must include
  the partition key, so there the surrogate-keyed ones have primary keys (pk, token) and
  feed_events (platform_pk, seq, token); SQLite keeps the keys declared here (a rowid
  table's INTEGER PRIMARY KEY is its fastest insert path). The pk values stay unique on
  both: one sequence per table hands them out. Orders and feed entries carry their
  binding's token so they live in the same partition (and, on a distributed engine, the
  same shard) as the binding they are about; the re-key moves them with it
  (storage.rekey). No foreign key joins two growing tables: one into a partitioned table
  would have to name the partition key, and the storage layer writes them together in
  one transaction anyway.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only gives INTEGER PRIMARY KEY autoincrement semantics to the INTEGER type.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class PrincipalRow(Base):
    """Platforms, carriers and admins; the role is part of the identity."""

    __tablename__ = "principals"
    __table_args__ = (UniqueConstraint("role", "name", name="uq_principals_role_name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(63))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    # Carriers only: the Ed25519 key that verifies their holder attestations.
    attestation_key: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # SHA-256 of the DER of the one client certificate this principal may present (a
    # reissued bundle replaces it, which retires the old certificate). None: any certificate
    # the CA issued for this identity (principals registered before pinning).
    cert_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    # Platforms only: the last sequence number handed out in this platform's feed. Bumped in
    # the transaction that appends events, which serialises appends per platform and keeps
    # the sequence gap-free.
    feed_head: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped in the same transaction as every change of standing (suspended, resumed, new
    # certificate or attestation key): open streams compare it with the one they began
    # under (services.standing).
    standing: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class TokenKeyRow(Base):
    """Public half and state of a VOPRF key. The secret lives only in the data dir."""

    __tablename__ = "token_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    state: Mapped[int] = mapped_column(SmallInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    rotated_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    retired_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class StoreStateRow(Base):
    """One row: the key every stored token is (being re-keyed) under, and the key map's epoch.

    The epoch is bumped by every change of the key map (rotation, end of a re-key,
    retirement). A request that mapped tokens reads it inside its transaction (FOR SHARE on
    PostgreSQL, so a rotation waits for the request to commit) and starts over when it moved:
    no write ever lands under a key the store has already started re-keying away from.
    """

    __tablename__ = "store_state"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    store_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    epoch: Mapped[int] = mapped_column(BigInteger)


class KeyDeltaRow(Base):
    """Delta = k_store / k_old for a live older key: maps its tokens to the store key.

    Only the token service can compute one (it holds both secrets); the store receives it
    at rotation and deletes it when the older key is retired.
    """

    __tablename__ = "key_deltas"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    to_key_id: Mapped[str] = mapped_column(String(32))
    delta: Mapped[bytes] = mapped_column(LargeBinary(32))


class RekeyRow(Base):
    """One store re-key (a rotation's background job): where it is, and who runs it."""

    __tablename__ = "rekeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    from_key_id: Mapped[str] = mapped_column(String(32))
    to_key_id: Mapped[str] = mapped_column(String(32))
    # RUNNING or DONE (registry.domain.rekey.RekeyState).
    state: Mapped[int] = mapped_column(SmallInteger)
    # The table being swept (an index into the re-key's table list) and the keyset cursor
    # in it: the last key whose batch committed. Written in each batch's transaction.
    table_no: Mapped[int] = mapped_column(SmallInteger, default=0)
    cursor: Mapped[bytes | None] = mapped_column(LargeBinary(64), nullable=True)
    # Counted by the first runner; rows_done grows in each batch's transaction.
    rows_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    started_us: Mapped[int] = mapped_column(BigInteger)
    finished_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The lease: one runner at a time across every process sharing the store.
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When the current lease holder took over, and rows_done then: its rate.
    run_started_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    run_rows_base: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_us: Mapped[int] = mapped_column(BigInteger)


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


class LifecycleLogHeadRow(Base):
    """One row: the last sequence handed out in the lifecycle log. Locked by the
    transaction that logs events, so sequences commit in order and without gaps."""

    __tablename__ = "lifecycle_log_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head: Mapped[int] = mapped_column(BigInteger)
    head_recorded_us: Mapped[int] = mapped_column(BigInteger)


class ReplicationCursorRow(Base):
    """A member's place in the hub's lifecycle log, written in the transaction that
    applies the entries up to it (so an entry is applied once, however often delivered)."""

    __tablename__ = "replication_cursor"

    source: Mapped[str] = mapped_column(String(63), primary_key=True)
    applied_seq: Mapped[int] = mapped_column(BigInteger)
    applied_recorded_us: Mapped[int] = mapped_column(BigInteger)
    # The hub's head as last heard: the lag.
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_recorded_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)


class ReplicationAckRow(Base):
    """At the hub: the last sequence each member acked."""

    __tablename__ = "replication_acks"

    member: Mapped[str] = mapped_column(String(63), primary_key=True)
    acked_seq: Mapped[int] = mapped_column(BigInteger)
    acked_us: Mapped[int] = mapped_column(BigInteger)


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


class OrderRow(Base):
    """One revocation order or notice for one binding at one platform."""

    __tablename__ = "orders"
    __table_args__ = (
        # Holder progress: all orders of one revocation, grouped by platform.
        Index("ix_orders_revocation", "revocation_id", "platform_pk"),
        # Open orders per binding (the holder view's "open revocation").
        Index("ix_orders_binding", "binding_pk"),
        # Stats and the overdue sweep: orders by state and deadline.
        Index("ix_orders_state_deadline", "state", "deadline_us"),
        # Redelivery: one platform's delivered-but-unacked orders.
        Index("ix_orders_platform_state", "platform_pk", "state"),
        UniqueConstraint("id", "token", name="uq_orders_id"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # A UUID; unique with the token (the partition key), which a UUID4 makes unique alone.
    # Acks look orders up by id: the unique index's prefix.
    id: Mapped[str] = mapped_column(String(36))
    revocation_id: Mapped[str] = mapped_column(ForeignKey("revocations.id"))
    platform_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"))
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


class FeedEventRow(Base):
    """The transactional outbox: each platform's gap-free sequence of orders."""

    __tablename__ = "feed_events"
    # An order's feed entry, found when a re-key moves the order to its new token.
    __table_args__ = (Index("ix_feed_events_order", "order_pk"),)

    # Replay after a sequence number is a range scan of this primary key.
    platform_pk: Mapped[int] = mapped_column(ForeignKey("principals.pk"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    order_pk: Mapped[int] = mapped_column(BigId)
    # The order's (so its binding's) token: the partition key. On PostgreSQL the primary
    # key is (platform_pk, seq, token), so replay stays a range scan of it per partition.
    token: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_us: Mapped[int] = mapped_column(BigInteger)


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


class LogStateRow(Base):
    """One row: the verifiable log's size and right edge (the compact range, largest
    subtree first, 32 bytes each). Appends lock it, so leaf indices are gap-free and the
    log grows in the order its transactions commit."""

    __tablename__ = "log_state"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    edge: Mapped[bytes] = mapped_column(LargeBinary)


class LogLeafRow(Base):
    """One leaf: the salted commitment the tree hashes, and its opening, which goes only to
    `holder_pk` (None: public, e.g. a key rotation) and to auditors."""

    __tablename__ = "log_leaves"
    __table_args__ = (Index("ix_log_leaves_ref", "ref"),)

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    commitment: Mapped[bytes] = mapped_column(LargeBinary(32))
    # lifecycle, revocation, order, ack, key (numbind.protocol.log_entries).
    kind: Mapped[str] = mapped_column(String(16))
    # What the entry is about: an order or revocation id, or "" (lifecycle events are
    # named by their leaf index).
    ref: Mapped[str] = mapped_column(String(64))
    holder_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_us: Mapped[int] = mapped_column(BigInteger)


class LogNodeRow(Base):
    """The hash of each complete subtree of two or more leaves, stored when it closes:
    any proof is then O(log n) reads of this table and log_leaves."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogCheckpointRow(Base):
    """Every checkpoint the registry signed, with the cosignatures witnesses added."""

    __tablename__ = "log_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    note: Mapped[bytes] = mapped_column(LargeBinary)
    created_us: Mapped[int] = mapped_column(BigInteger)


class WitnessStateRow(Base):
    """This registry as a witness of a log (origin): the last checkpoint it cosigned and
    the right edge of that tree, so it replays only new leaves."""

    __tablename__ = "witness_state"

    origin: Mapped[str] = mapped_column(String(255), primary_key=True)
    log_key: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    edge: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[bytes] = mapped_column(LargeBinary)
    updated_us: Mapped[int] = mapped_column(BigInteger)


class LogWitnessKeyRow(Base):
    """The log's side: a member's witness key, pinned at its first cosignature."""

    __tablename__ = "log_witness_keys"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    vkey: Mapped[str] = mapped_column(String(512))
    member: Mapped[str] = mapped_column(String(63))
    created_us: Mapped[int] = mapped_column(BigInteger)


class WitnessAlarmRow(Base):
    """Evidence a witness kept when it refused: both checkpoints and the failed proof."""

    __tablename__ = "witness_alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    origin: Mapped[str] = mapped_column(String(255))
    failure: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(1000))
    old_note: Mapped[bytes] = mapped_column(LargeBinary)
    new_note: Mapped[bytes] = mapped_column(LargeBinary)
    proof: Mapped[bytes] = mapped_column(LargeBinary)
    created_us: Mapped[int] = mapped_column(BigInteger)
