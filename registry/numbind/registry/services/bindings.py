"""A platform's bindings: publish, withdraw, reconcile. No grpc here.

Each method validates everything first (nothing is written for a bad request), then runs
one unit of work keyed by the caller's principal pk, so a platform only ever reads or
writes its own bindings.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any, TypeAlias

from numbind.protocol.digest import bucket16_range
from numbind.registry.domain import bindings as rules
from numbind.registry.domain import validate
from numbind.registry.domain.bindings import (
    BindingKey,
    BindingPage,
    BucketDigest,
    PageCursor,
    PublishCounts,
    RevokedPage,
    WithdrawCounts,
)
from numbind.registry.domain.types import Binding, Principal, now_us
from numbind.registry.keys import KeyRing
from numbind.registry.storage import bindings as store
from numbind.registry.storage import idempotency
from numbind.registry.storage.db import Database, Session

# Module-level aliases: inside the class, `list` names the method.
Digests: TypeAlias = list[BucketDigest]


class BindingService:
    def __init__(self, db: Database, keys: KeyRing) -> None:
        self._db = db
        self._keys = keys

    async def publish(
        self, caller: Principal, request_id: str, body_hash: bytes, bindings: Sequence[Binding]
    ) -> PublishCounts:
        """Upsert up to 10,000 bindings, all or nothing; a retry answers the same counts."""
        validate.request_id(request_id)
        live = frozenset(k.key_id for k in self._keys.live())
        now = now_us()
        # Validation and hashing are pure CPU; off the event loop so other calls keep flowing.
        batch = await asyncio.to_thread(_validated_batch, caller.pk, bindings, live, now)

        def act(session: Session) -> dict[str, Any]:
            return idempotency.once(
                session,
                caller.pk,
                "PublishBindings",
                request_id,
                body_hash,
                lambda: dataclasses.asdict(store.upsert(session, batch)),
            )

        return PublishCounts(**await self._db.run(act))

    async def withdraw(
        self, caller: Principal, request_id: str, body_hash: bytes, keys: Sequence[BindingKey]
    ) -> WithdrawCounts:
        """Mark up to 10,000 of the caller's bindings WITHDRAWN; a retry answers the same."""
        validate.request_id(request_id)
        rules.validate_withdraw(keys)
        now = now_us()

        def act(session: Session) -> dict[str, Any]:
            return idempotency.once(
                session,
                caller.pk,
                "WithdrawBindings",
                request_id,
                body_hash,
                lambda: dataclasses.asdict(store.withdraw(session, caller.pk, keys, now)),
            )

        return WithdrawCounts(**await self._db.run(act))

    async def digest(self, caller: Principal, bucket_bits: int, key_id: str) -> tuple[Digests, int]:
        """Count and digest of the caller's live bindings per non-empty bucket, and how many
        of its bindings are revoked."""
        bits = rules.bucket_bits(bucket_bits)
        kid = rules.key_id_filter(key_id)

        def read(session: Session) -> tuple[Digests, int]:
            return (
                store.digests(session, caller.pk, bits, kid),
                store.revoked_count(session, caller.pk, kid),
            )

        return await self._db.run(read, write=False)

    async def list(
        self,
        caller: Principal,
        bucket_bits: int,
        bucket: int,
        key_id: str,
        page_size: int,
        page_token: str,
    ) -> BindingPage:
        """One page of the caller's live bindings in one bucket, in a stable order."""
        lo, hi, kid, size, after = _page_request(bucket_bits, bucket, key_id, page_size, page_token)
        # One extra row tells whether another page follows.
        rows = await self._db.run(
            lambda s: store.list_page(s, caller.pk, lo, hi, kid, after, size + 1), write=False
        )
        next_token = ""
        if len(rows) > size:
            last_bucket, last_pk, _ = rows[size - 1]
            next_token = rules.encode_page_token(PageCursor(lo, hi, last_bucket, last_pk))
        return BindingPage([b for _, _, b in rows[:size]], next_token)

    async def list_revoked(
        self,
        caller: Principal,
        bucket_bits: int,
        bucket: int,
        key_id: str,
        page_size: int,
        page_token: str,
    ) -> RevokedPage:
        """One page of the caller's revoked bindings in one bucket, each with when."""
        lo, hi, kid, size, after = _page_request(bucket_bits, bucket, key_id, page_size, page_token)
        rows = await self._db.run(
            lambda s: store.list_revoked_page(s, caller.pk, lo, hi, kid, after, size + 1),
            write=False,
        )
        next_token = ""
        if len(rows) > size:
            last_bucket, last_pk, _, _ = rows[size - 1]
            next_token = rules.encode_page_token(PageCursor(lo, hi, last_bucket, last_pk))
        return RevokedPage([(b, us) for _, _, b, us in rows[:size]], next_token)


def _page_request(
    bucket_bits: int, bucket: int, key_id: str, page_size: int, page_token: str
) -> tuple[int, int, str, int, PageCursor | None]:
    """A page request checked: (lo, hi) of 16-bit buckets, key filter, size, cursor."""
    bits = rules.bucket_bits(bucket_bits)
    rules.bucket(bucket, bits)
    kid = rules.key_id_filter(key_id)
    size = rules.page_size(page_size)
    lo, hi = bucket16_range(bucket, bits)
    return lo, hi, kid, size, rules.decode_page_token(page_token, lo, hi)


def _validated_batch(
    platform_pk: int, bindings: Sequence[Binding], live_keys: frozenset[str], now: int
) -> store.PreparedBatch:
    rules.validate_publish(bindings, live_keys, now)
    return store.prepare(platform_pk, bindings, now)
