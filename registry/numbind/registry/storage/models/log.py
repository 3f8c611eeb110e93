"""The lifecycle log members replicate, and the verifiable log with its witnesses."""

from __future__ import annotations

from numbind.registry.storage.models.base import Base
from sqlalchemy import BigInteger, Index, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column


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
