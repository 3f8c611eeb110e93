"""A platform's bindings: publish, withdraw, reconcile. No grpc here.

Each method validates everything first (nothing is written for a bad request), then runs
one unit of work keyed by the caller's principal pk, so a platform only ever reads or
writes its own bindings. Tokens are mapped to the store key first (services.tokenmap);
digests and lists answer only in the store key, and not while a re-key is moving rows.
"""

from __future__ import annotations

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
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.types import Binding, Principal, now_us
from numbind.registry.errors import FailedPrecondition
from numbind.registry.services.arrival import revoke_pre_tenure
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import bindings as store
from numbind.registry.storage import idempotency, keymap, principals, reconcile
from numbind.registry.storage.db import Database, Session

# Module-level aliases: inside the class, `list` names the method.
Digests: TypeAlias = list[BucketDigest]


class BindingService:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        notifier: FeedNotifier | None = None,
        deadline_seconds: float = 24 * 3600.0,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._notifier = notifier if notifier is not None else FeedNotifier()
        self._deadline = deadline_seconds

    async def publish(
        self, caller: Principal, request_id: str, body_hash: bytes, bindings: Sequence[Binding]
    ) -> PublishCounts:
        """Upsert up to 10,000 bindings, all or nothing; a retry answers the same counts.
        Bindings bound before their number's last reissue are revoked on arrival (counted
        in `revoked_on_arrival` as well as in inserted/updated)."""
        validate.request_id(request_id)
        now = now_us()

        # Validation, mapping and hashing are CPU work: TokenMapper runs this off the loop.
        def prepare(view: KeyView) -> store.PreparedBatch:
            mapped, old = rules.map_publish(bindings, view, now)
            return store.prepare(caller.pk, mapped, now, old)

        def first(session: Session, batch: store.PreparedBatch) -> dict[str, Any]:
            counts = store.upsert(session, batch)
            arrived, platforms = revoke_pre_tenure(session, batch, self._deadline)
            counts = dataclasses.replace(counts, revoked_on_arrival=arrived)
            return {**dataclasses.asdict(counts), "platforms": sorted(platforms)}

        def act(session: Session, _: KeyView, batch: store.PreparedBatch) -> dict[str, Any]:
            return idempotency.once(
                session,
                caller.pk,
                "PublishBindings",
                request_id,
                body_hash,
                lambda: first(session, batch),
            )

        result = await self._tokens.run(prepare, act)
        self._notifier.notify(result.pop("platforms", ()))
        return PublishCounts(**result)

    async def withdraw(
        self,
        caller: Principal,
        request_id: str,
        body_hash: bytes,
        keys: Sequence[BindingKey],
        *,
        keep_at_least: int = 0,
    ) -> WithdrawCounts:
        """Mark up to 10,000 of the caller's bindings WITHDRAWN; a retry answers the same.
        `keep_at_least`: refused, nothing withdrawn, if fewer live bindings would be left
        (two syncs at once each withdrew up to their limit, and together emptied the
        platform)."""
        validate.request_id(request_id)
        now = now_us()

        def withdraw(session: Session, mapped: list[tuple[StoreToken, bytes]]) -> Any:
            counts = store.withdraw(session, caller.pk, mapped, now)
            if keep_at_least:
                # After the rows it withdrew are locked, as the reissue's writers lock
                # theirs before the platform's row; a second guarded withdrawal waits here,
                # then counts what the first left.
                principals.lock(session, caller.pk)
                left = reconcile.live_count(session, caller.pk)
                if left < keep_at_least:
                    raise FailedPrecondition(
                        f"keep_at_least: this withdrawal would leave {left:,} live bindings, "
                        f"fewer than the {keep_at_least:,} asked to keep (another sync or "
                        "withdrawal of this platform ran at the same time?); nothing was "
                        "withdrawn: compare again, or sync once at a time"
                    )
            return dataclasses.asdict(counts)

        def prepare(view: KeyView) -> list[tuple[StoreToken, bytes]]:
            return rules.map_withdraw(keys, view)

        def act(session: Session, _: KeyView, mapped: list[tuple[StoreToken, bytes]]) -> Any:
            return idempotency.once(
                session,
                caller.pk,
                "WithdrawBindings",
                request_id,
                body_hash,
                lambda: withdraw(session, mapped),
            )

        return WithdrawCounts(**await self._tokens.run(prepare, act))

    @staticmethod
    def _store_key(session: Session, view: KeyView, key_id: str) -> str:
        """The key to answer in, or NotStoreKey / RekeyInProgress (with fresh progress)."""
        return view.require_store_key(
            key_id, keymap.latest_rekey(session) if view.rekeying else None
        )

    async def digest(self, caller: Principal, bucket_bits: int, key_id: str) -> tuple[Digests, int]:
        """Count and digest of the caller's live bindings per non-empty bucket, and how many
        of its bindings are revoked."""
        bits = rules.bucket_bits(bucket_bits)
        kid = rules.key_id_filter(key_id)

        def act(session: Session, view: KeyView) -> tuple[Digests, int]:
            answer_key = self._store_key(session, view, kid)
            return (
                reconcile.digests(session, caller.pk, bits, answer_key),
                reconcile.revoked_count(session, caller.pk, answer_key),
            )

        return await self._tokens.act(act, write=False)

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
        def act(session: Session, view: KeyView) -> list[tuple[int, int, Binding]]:
            answer_key = self._store_key(session, view, kid)
            return reconcile.list_page(session, caller.pk, lo, hi, answer_key, after, size + 1)

        rows = await self._tokens.act(act, write=False)
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
        """One page of the caller's revoked bindings in one bucket, each with when; in the
        store key, and not while a re-key is moving rows (as `list`)."""
        lo, hi, kid, size, after = _page_request(bucket_bits, bucket, key_id, page_size, page_token)

        def act(session: Session, view: KeyView) -> list[tuple[int, int, Binding, int]]:
            answer_key = self._store_key(session, view, kid)
            return reconcile.list_revoked_page(
                session, caller.pk, lo, hi, answer_key, after, size + 1
            )

        rows = await self._tokens.act(act, write=False)
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
