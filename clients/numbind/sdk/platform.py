"""Platform SDK: publish, withdraw and reconcile a platform's bindings with the registry.

    async with PlatformClient(Bundle.load("acme-bundle")) as client:
        await client.publish([Row("13800138000", "user-42", bound_at, Kind.LOGIN)])
        summary = await client.sync(every_current_row)   # nightly; moves only what changed

Numbers are normalised to E.164 and tokenised through the registry's VOPRF (proofs checked):
the registry sees tokens and ``account_ref`` values (account_refs.py), never numbers or ids.

Records
    Platforms that keep tokens skip tokenisation: ``publish_records``, ``withdraw_keys`` and
    ``sync_records`` take precomputed ``Record`` / ``BindingKey`` values.

Errors
    RPC failures raise ``numbind.sdk.errors`` types (never raw grpc errors); UNAVAILABLE and
    RESOURCE_EXHAUSTED are retried with jittered backoff under the same request id, so the
    registry answers a retried batch as it answered the first try. A bad number raises
    ``InvalidNumber`` and a refused binding an error whose ``position`` is the item's 1-based
    position in the input (``"binding 10,004: bound_at: ..."``); a bad row value raises
    ValueError naming the field; a sync that would withdraw more than its limit raises
    SyncAborted (by default the larger of 10 % of the registry's bindings and 1,000, and
    never more than half of them unless that is 100 or fewer). While
    the registry re-keys its store after a key rotation, ``digest`` and ``list_bucket``
    raise RekeyInProgress (with progress and a retry delay); ``sync`` waits it out.
    Batches run concurrently: when one fails, batches already sent stay published (every
    call is idempotent, so running it again is safe).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import grpc.aio
from numbind.protocol.bundle import Bundle, BundleError
from numbind.protocol.checkpoint import WitnessPolicy
from numbind.protocol.limits import MAX_BINDINGS
from numbind.sdk import reassigned, wire
from numbind.sdk.account_refs import AccountRefs
from numbind.sdk.bindings import BindingRpc
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import CURSOR_FILE, EventFeed
from numbind.sdk.log import LogClient
from numbind.sdk.model import (
    BindingKey,
    BucketDigest,
    FeedEvent,
    Key,
    NumberAccount,
    PublishSummary,
    Reassigned,
    Record,
    Row,
    SyncSummary,
    WithdrawSummary,
)
from numbind.sdk.phone import DEFAULT_REGION
from numbind.sdk.pipeline import chunks, chunks_by_key
from numbind.sdk.platform_batches import (
    RowTokens,
    precomputed,
    record_item,
    records_fill,
    tokenised_fill,
    tokenising,
)
from numbind.sdk.progress import Meter, ProgressCallback
from numbind.sdk.retry import RetryPolicy
from numbind.sdk.snapshot import check_bits
from numbind.sdk.sync import SyncOptions, run_sync
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import platforms_pb2_grpc

__all__ = ["MAX_BATCH", "PlatformClient"]

MAX_BATCH = MAX_BINDINGS


def _key_of(k: BindingKey) -> Key:
    return k.token, k.account_ref


class PlatformClient:
    """The platform side of the registry: publish, withdraw, digest, list and sync bindings,
    follow the event feed, ask whether numbers were reassigned.

    Use as ``async with PlatformClient(bundle) as client``. ``batch_size`` bindings go in one
    request (at most 10,000) with ``in_flight`` requests at once; ``progress`` is called after
    every batch with rows done, total (if known) and rate.
    ``retry`` and ``rpc_timeout`` (the deadline of one try of any call) bound how long a
    call may take: see the README's "Use the SDK".
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        channel: grpc.aio.Channel | None = None,
        account_refs: AccountRefs | None = None,
        key_id: str | None = None,
        region: str = DEFAULT_REGION,
        batch_size: int = MAX_BATCH,
        in_flight: int = 4,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        rpc_timeout: float = 120.0,
        log_trust: WitnessPolicy | None = None,
    ) -> None:
        if bundle.role != "platform":
            raise BundleError(
                f"bundle {bundle.directory} is a {bundle.role} bundle; want a platform bundle"
            )
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size: got {batch_size}, want 1..{MAX_BATCH}")
        if in_flight < 1:
            raise ValueError(f"in_flight: got {in_flight}, want at least 1")
        self.bundle = bundle
        self._given_channel = channel
        self._channel: grpc.aio.Channel | None = channel
        self._refs = account_refs
        self._want_key = key_id
        self._region = region
        self._batch = batch_size
        self._in_flight = in_flight
        self._retry = retry or RetryPolicy()
        self._progress = progress
        self._timeout = rpc_timeout
        self._tokenizer: Tokenizer | None = None
        self._rpc: BindingRpc | None = None
        # The feed of the last events() call (its orders_proved counts proved orders).
        self.feed: EventFeed | None = None
        # Whose cosignatures an order's checkpoint needs before the feed acks it. None: the
        # default, every member of the federation's manifest that declared a witness key
        # for the log the manifest names; none for a log it does not name or a federation
        # of one (numbind.sdk.log_trust).
        self._log_trust = log_trust

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._tokenizer is not None:
            self._tokenizer.close()
            self._tokenizer = None
        if self._channel is not None and self._given_channel is None:
            await self._channel.close()
        self._channel = self._given_channel
        self._rpc = None

    # ---- plumbing -------------------------------------------------------------------------

    def _ensure(self) -> tuple[grpc.aio.Channel, BindingRpc, Tokenizer]:
        # Created on first use, inside the running loop that grpc.aio binds them to.
        if self._channel is None:
            self._channel = secure_channel(self.bundle)
        if self._rpc is None or self._tokenizer is None:
            stub = platforms_pb2_grpc.PlatformsStub(self._channel)
            self._rpc = BindingRpc(
                stub, in_flight=self._in_flight, retry=self._retry, timeout=self._timeout
            )
            self._tokenizer = Tokenizer(
                self._channel,
                key_id=self._want_key,
                region=self._region,
                in_flight=2,
                retry=self._retry,
                rpc_timeout=self._timeout,
            )
        return self._channel, self._rpc, self._tokenizer

    @property
    def account_refs(self) -> AccountRefs:
        if self._refs is None:
            self._refs = AccountRefs.from_bundle(self.bundle)
        return self._refs

    def account_ref(self, account_id: str) -> bytes:
        """The account_ref this client publishes for ``account_id``."""
        return self.account_refs(account_id)

    async def key_id(self) -> str:
        """The token key this client tokenises under (the registry's active key by default)."""
        _, _, tokenizer = self._ensure()
        return (await tokenizer.key()).key_id

    def _row_tokens(self) -> RowTokens:
        _, _, tokenizer = self._ensure()
        return RowTokens(tokenizer, lambda: self.account_refs)

    # ---- the event feed --------------------------------------------------------------------

    def events(
        self,
        *,
        follow: bool = True,
        cursor_file: Path | str | None = None,
        heartbeat_seconds: int = 0,
    ) -> AsyncIterator[FeedEvent]:
        """This platform's revocation orders and notices, as an async iterator.

        Resumes after the last event acked without gaps; that cursor persists in
        ``cursor_file`` (default ``<bundle>/feed-cursor.json``, shared with
        ``numbind platform events``). Ack each with ``await event.ack(...)``; delivery is
        at-least-once, so apply events by ``order_id``. ``follow=True`` reconnects for as
        long as it runs; ``follow=False`` stops once caught up and retries as any other call
        does, raising Unavailable when the registry stays unreachable or silent.
        """
        channel, _, _ = self._ensure()
        path = cursor_file if cursor_file is not None else self.bundle.directory / CURSOR_FILE
        log = LogClient.for_bundle(
            channel, self.bundle.directory, trust=self._log_trust, rpc_timeout=self._timeout
        )
        feed = EventFeed(
            channel,
            path,
            heartbeat_seconds=heartbeat_seconds,
            log=log,
            retry=None if follow else self._retry,
            ack_retry=self._retry,
            rpc_timeout=self._timeout,
        )
        self.feed = feed
        return feed.events(follow=follow)

    # ---- reassigned-since -----------------------------------------------------------------

    async def check_reassigned(self, queries: Sequence[tuple[str, datetime]]) -> list[Reassigned]:
        """REASSIGNED / NOT_REASSIGNED / NO_DATA per (phone, since), in order.

        Ask before calling or messaging a number you have not used since ``since``.
        """
        channel, _, tokenizer = self._ensure()
        answers = await reassigned.check_reassigned(
            channel, tokenizer, queries, self._retry, self._timeout
        )
        return [answer for _, _, answer in answers]

    # ---- publish / withdraw ---------------------------------------------------------------

    async def publish(
        self,
        rows: Iterable[Row] | AsyncIterable[Row],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> PublishSummary:
        """Tokenise and upsert rows, streamed in pipelined batches. Idempotent.

        ``progress`` hears of two phases at once: "tokenise" (a thousand rows at a time)
        and "publish" (a batch at a time)."""
        callback = progress or self._progress
        prepare = tokenising(self._row_tokens().items, Meter("tokenise", total, callback).start())
        _, rpc, _ = self._ensure()
        meter = Meter("publish", total, callback).start()
        return await rpc.publish(chunks(rows, self._batch), prepare, meter)

    async def publish_records(
        self,
        records: Iterable[Record] | AsyncIterable[Record],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> PublishSummary:
        """Upsert precomputed records (no tokenisation). A batch holds one key id."""
        _, rpc, _ = self._ensure()
        meter = Meter("publish", total, progress or self._progress).start()
        return await rpc.publish(
            chunks_by_key(records, self._batch), precomputed(record_item), meter
        )

    async def withdraw(
        self,
        rows: Iterable[NumberAccount] | AsyncIterable[NumberAccount],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> WithdrawSummary:
        """Withdraw the bindings of (phone, account_id) pairs; other Row fields are unused."""
        callback = progress or self._progress
        prepare = tokenising(self._row_tokens().keys, Meter("tokenise", total, callback).start())
        _, rpc, _ = self._ensure()
        meter = Meter("withdraw", total, callback).start()
        return await rpc.withdraw(chunks(rows, self._batch), prepare, meter)

    async def withdraw_keys(
        self,
        keys: Iterable[BindingKey] | AsyncIterable[BindingKey],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> WithdrawSummary:
        """Withdraw bindings named by precomputed keys."""
        _, rpc, _ = self._ensure()
        meter = Meter("withdraw", total, progress or self._progress).start()
        return await rpc.withdraw(chunks_by_key(keys, self._batch), precomputed(_key_of), meter)

    # ---- reading back ---------------------------------------------------------------------

    async def digest(self, bucket_bits: int, key_id: str | None = None) -> dict[int, BucketDigest]:
        """The registry's non-empty buckets of this platform's bindings (a missing one is
        empty). ``key_id`` None means this client's key, "" the registry's store key (its
        active key, under which it holds every binding); another key raises KeyRotated, and
        a store re-key in progress RekeyInProgress."""
        check_bits(bucket_bits)
        _, rpc, _ = self._ensure()
        return await rpc.digest(bucket_bits, await self.key_id() if key_id is None else key_id)

    async def list_bucket(
        self,
        bucket_bits: int,
        bucket: int,
        *,
        key_id: str | None = None,
        page_size: int = 5000,
    ) -> AsyncIterator[Record]:
        """Every active binding of this platform in one bucket, page by page."""
        check_bits(bucket_bits)
        if not 0 <= bucket < 1 << bucket_bits:
            raise ValueError(f"bucket: got {bucket}, want 0..{(1 << bucket_bits) - 1}")
        _, rpc, _ = self._ensure()
        kid = await self.key_id() if key_id is None else key_id
        async for page in rpc.pages(bucket_bits, bucket, kid, page_size, wire.record):
            for record in page:
                yield record

    # ---- reconciliation -------------------------------------------------------------------

    async def sync(
        self,
        snapshot: Iterable[Row] | AsyncIterable[Row],
        *,
        bucket_bits: int | None = None,
        total: int | None = None,
        dry_run: bool = False,
        max_withdraw: int | None = None,
        force: bool = False,
        work_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncSummary:
        """Make the registry hold exactly ``snapshot`` (this platform's every current binding).

        Streams the snapshot once into a temporary SQLite file in ``work_dir`` (default: the
        system temp dir; ~200 bytes a row), compares per-bucket digests with the registry,
        lists only the buckets that differ on both sides, then publishes what is missing or
        changed and withdraws what is extra. The comparison runs under the key the registry
        holds bindings under (its active key): after a key rotation, snapshot rows made
        under the old key are tokenised again, and while the registry re-keys its store
        the sync waits (progress phase ``re-key``) rather than see a difference that is
        not one. A binding named twice keeps its latest bound_at.

        A sync that would withdraw more than the larger of 10 % of the registry's bindings
        and 1,000, or more than half of them and more than 100, raises SyncAborted before
        changing anything (a truncated export, or one meant for another platform, must not
        empty the registry): ``max_withdraw=N`` sets the limit instead of both rules,
        ``force=True`` lifts it. ``dry_run`` stops after planning and
        applies the same check, reporting in ``summary.refusal`` what a real run would
        refuse. Snapshot rows the registry revoked (a holder's request or a reissue, acked
        by this platform) are skipped, counted in ``summary.revoked_skipped`` and logged:
        remove those numbers from your export; a row with a bound_at after the revocation
        is a new binding and is published.
        """
        options = self._sync_options(bucket_bits, dry_run, max_withdraw, force, work_dir, progress)

        fill = tokenised_fill(snapshot, self._row_tokens(), total, options)
        _, rpc, tokenizer = self._ensure()
        return await run_sync(rpc, tokenizer, fill, options)

    async def sync_records(
        self,
        snapshot: Iterable[Record] | AsyncIterable[Record],
        *,
        bucket_bits: int | None = None,
        total: int | None = None,
        dry_run: bool = False,
        max_withdraw: int | None = None,
        force: bool = False,
        work_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncSummary:
        """``sync`` for platforms that keep tokens: every record under one key id, the
        registry's store key (else KeyRotated names the key to tokenise under)."""
        options = self._sync_options(bucket_bits, dry_run, max_withdraw, force, work_dir, progress)

        fill = records_fill(snapshot, total, options)
        _, rpc, tokenizer = self._ensure()
        return await run_sync(rpc, tokenizer, fill, options)

    def _sync_options(
        self,
        bucket_bits: int | None,
        dry_run: bool,
        max_withdraw: int | None,
        force: bool,
        work_dir: Path | None,
        progress: ProgressCallback | None,
    ) -> SyncOptions:
        return SyncOptions(
            bucket_bits=bucket_bits,
            dry_run=dry_run,
            max_withdraw=max_withdraw,
            force=force,
            work_dir=work_dir,
            progress=progress or self._progress,
            batch_size=self._batch,
            in_flight=self._in_flight,
        )
