"""Single-use attestation nonces, per carrier.

A nonce is kept only while an attestation carrying it could still be accepted; after that
the time checks refuse the attestation anyway, so the row is dropped.
"""

from __future__ import annotations

from numbind.registry.storage.models import AttestationNonceRow
from sqlalchemy import delete, select
from sqlalchemy.orm import Session


def used(session: Session, carrier_pk: int, nonce: bytes, *, now_us: int) -> bool:
    """Whether this carrier's `nonce` is already spent (and still remembered). A read: a
    False here decides nothing, only `claim` spends a nonce; it lets a replay be refused
    before any work is done for it."""
    kept = session.execute(
        select(AttestationNonceRow.expires_us).where(
            AttestationNonceRow.carrier_pk == carrier_pk, AttestationNonceRow.nonce == nonce
        )
    ).scalar_one_or_none()
    return kept is not None and kept >= now_us


def claim(
    session: Session, carrier_pk: int, nonce: bytes, *, keep_until_us: int, now_us: int
) -> bool:
    """Record `nonce` as used by this carrier until `keep_until_us`; False if it already was.

    MUST run in the transaction that acts on the attestation, so a refused call leaves the
    nonce unused. Two concurrent claims of one nonce collide on the primary key at commit;
    the retried loser then sees the winner's row and gets False.
    """
    session.execute(delete(AttestationNonceRow).where(AttestationNonceRow.expires_us < now_us))
    if session.get(AttestationNonceRow, (carrier_pk, nonce)) is not None:
        return False
    session.add(AttestationNonceRow(carrier_pk=carrier_pk, nonce=nonce, expires_us=keep_until_us))
    session.flush()
    return True
