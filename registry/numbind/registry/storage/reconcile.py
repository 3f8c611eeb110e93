"""What reconciliation reads of one platform's bindings: per-bucket digests, pages of its
live and of its revoked bindings, and how many it has revoked.

Every function takes the caller's session and the platform's principal pk and reads only
that platform's rows, filtered to one key id when given (services answer only in the store
key, and not while a re-key moves rows: registry.services.bindings).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from numbind.protocol.digest import MAX_BUCKET_BITS, fold
from numbind.registry.domain.bindings import BucketDigest, PageCursor
from numbind.registry.domain.types import (
    LIVE_BINDING_STATES,
    Binding,
    BindingKind,
    BindingState,
    Token,
)
from numbind.registry.storage.models import BindingRow
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

__all__ = ["digests", "list_page", "list_revoked_page", "live_count", "revoked_count"]

_T = BindingRow.__table__.c
_LIVE = tuple(int(s) for s in LIVE_BINDING_STATES)
_REVOKED = int(BindingState.REVOKED)
# Rows fetched per round trip when streaming a platform's digests.
_STREAM_ROWS = 20_000


def digests(session: Session, platform_pk: int, bits: int, key_id: str) -> list[BucketDigest]:
    """Count and XOR digest of the platform's live bindings per non-empty bucket, in order.

    Streams (bucket, digest) pairs in partitions, so memory stays flat however many
    bindings the platform has; XOR runs on Python ints, one per 16-bit bucket, folded to
    `bits` at the end.
    """
    stmt = select(_T.bucket, _T.digest).where(_T.platform_pk == platform_pk, _T.state.in_(_LIVE))
    if key_id:
        stmt = stmt.where(_T.key_id == key_id)
    size = 1 << MAX_BUCKET_BITS
    acc = [0] * size
    counts = [0] * size
    from_bytes = int.from_bytes
    result = session.execute(stmt, execution_options={"yield_per": _STREAM_ROWS})
    for part in result.partitions():
        for bucket, digest in part:
            acc[bucket] ^= from_bytes(digest, "big")
            counts[bucket] += 1
    return [BucketDigest(b, n, digest) for b, n, digest in fold(counts, acc, bits)]


def list_page(
    session: Session,
    platform_pk: int,
    lo: int,
    hi: int,
    key_id: str,
    after: PageCursor | None,
    limit: int,
) -> list[tuple[int, int, Binding]]:
    """Up to `limit` live bindings with 16-bit bucket in [lo, hi], as (bucket, pk, binding),
    in (bucket, pk) order — the order of the (platform_pk, bucket) index, whose entries also
    carry the row id, so a page is one index range scan from the cursor on."""
    rows = _page(session, platform_pk, lo, hi, key_id, after, limit, _T.state.in_(_LIVE))
    return [
        (bucket, pk, Binding(Token(kid, token), ref, bound_us, BindingKind(kind)))
        for bucket, pk, kid, token, ref, bound_us, kind in rows
    ]


def list_revoked_page(
    session: Session,
    platform_pk: int,
    lo: int,
    hi: int,
    key_id: str,
    after: PageCursor | None,
    limit: int,
) -> list[tuple[int, int, Binding, int]]:
    """As list_page, for the platform's REVOKED bindings, each with when it was revoked:
    (bucket, pk, binding, revoked_us)."""
    revoked = _T.state == _REVOKED
    rows = _page(session, platform_pk, lo, hi, key_id, after, limit, revoked, _T.updated_us)
    return [
        (bucket, pk, Binding(Token(kid, token), ref, bound_us, BindingKind(kind)), revoked_us)
        for bucket, pk, kid, token, ref, bound_us, kind, revoked_us in rows
    ]


def _page(
    session: Session,
    platform_pk: int,
    lo: int,
    hi: int,
    key_id: str,
    after: PageCursor | None,
    limit: int,
    state: ColumnElement[bool],
    *extra: ColumnElement[Any],
) -> Iterable[Any]:
    """One page of list_page or list_revoked_page: the platform's bindings in `state`
    (bucket, pk, key_id, token, account_ref, bound_us, kind, then `extra`) after the cursor."""
    start = after.after_bucket if after else lo
    stmt = select(
        _T.bucket, _T.pk, _T.key_id, _T.token, _T.account_ref, _T.bound_us, _T.kind, *extra
    ).where(_T.platform_pk == platform_pk, _T.bucket >= start, _T.bucket <= hi, state)
    if after is not None:
        stmt = stmt.where(or_(_T.bucket > after.after_bucket, _T.pk > after.after_pk))
    if key_id:
        stmt = stmt.where(_T.key_id == key_id)
    return session.execute(stmt.order_by(_T.bucket, _T.pk).limit(limit))


def revoked_count(session: Session, platform_pk: int, key_id: str) -> int:
    """How many of the platform's bindings (under key_id, or any when empty) are REVOKED."""
    stmt = select(func.count()).where(_T.platform_pk == platform_pk, _T.state == _REVOKED)
    if key_id:
        stmt = stmt.where(_T.key_id == key_id)
    return int(session.scalar(stmt) or 0)


def live_count(session: Session, platform_pk: int) -> int:
    """How many of the platform's bindings are live (what its digests count), any key."""
    stmt = select(func.count()).where(_T.platform_pk == platform_pk, _T.state.in_(_LIVE))
    return int(session.execute(stmt).scalar_one())
