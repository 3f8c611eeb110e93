"""Single-use attestation nonces, per carrier.

A nonce is kept only while an attestation carrying it could still be accepted; after that
the time checks refuse the attestation anyway, so the row is dropped.
"""

from __future__ import annotations

from numbind.registry.storage.db import driver_sql
from sqlalchemy.orm import Session


def used(session: Session, carrier_pk: int, nonce: bytes, *, now_us: int) -> bool:
    """Whether this carrier's `nonce` is already spent (and still remembered). A read: a
    False here decides nothing, only `claim` spends a nonce; it lets a replay be refused
    before any work is done for it. Driver SQL, as `claim`: every query reads it."""
    conn = session.connection()
    kept = conn.exec_driver_sql(
        driver_sql(
            conn,
            "SELECT expires_us FROM attestation_nonces WHERE carrier_pk = ? AND nonce = ?",
        ),
        (carrier_pk, nonce),
    ).scalar_one_or_none()
    return kept is not None and kept >= now_us


def claim(
    session: Session, carrier_pk: int, nonce: bytes, *, keep_until_us: int, now_us: int
) -> bool:
    """Record `nonce` as used by this carrier until `keep_until_us`; False if it already was.

    MUST run in the transaction that acts on the attestation, so a refused call leaves the
    nonce unused. One insert that does nothing on a conflict: a concurrent claim of the
    same nonce waits for the first to commit (PostgreSQL) or for the write lock (SQLite),
    then inserts nothing and gets False. Driver SQL: every query spends a nonce, and the
    ORM's unit of work cost more than the two statements.
    """
    conn = session.connection()
    conn.exec_driver_sql(
        driver_sql(conn, "DELETE FROM attestation_nonces WHERE expires_us < ?"), (now_us,)
    )
    inserted = conn.exec_driver_sql(
        driver_sql(
            conn,
            "INSERT INTO attestation_nonces (carrier_pk, nonce, expires_us) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
        ),
        (carrier_pk, nonce, keep_until_us),
    )
    return inserted.rowcount == 1
