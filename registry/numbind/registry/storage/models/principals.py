"""Principals and the token keys: who may call, the VOPRF keys, the key every stored
token is under, and the store re-key after a rotation."""

from __future__ import annotations

from numbind.registry.storage.models.base import Base
from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column


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
