"""Platform SDK: publish, withdraw and reconcile a platform's bindings with the registry.

    async with PlatformClient(Bundle.load("acme-bundle")) as client:
        await client.publish([Row("13800138000", "user-42", bound_at, Kind.LOGIN)])
        summary = await client.sync(every_current_row)   # nightly; moves only what changed

Numbers are normalised to E.164 and tokenised through the registry's VOPRF (proofs checked);
the registry sees tokens and ``account_ref`` values, never numbers or account ids.

account_ref
    Opaque bytes the registry hands back to this platform only, inside its own revocation
    events. By default ``account_ref = HMAC-SHA256(secret, "numbind-account-ref-v1\\0" +
    account_id)`` (32 bytes), so the registry learns nothing about the account. The secret is
    the file ``account-ref.key`` (64 hex characters, mode 0600) in the bundle directory,
    created on first use; or pass ``AccountRefs(secret)`` explicitly to keep it elsewhere (a
    KMS, a secrets manager). Back it up: with a new secret every ref changes, so the next sync
    withdraws every binding and publishes it again under its new ref, and events already
    delivered name refs the platform can no longer recompute. To map an event back to an
    account, compute ``refs(account_id)`` for candidate accounts or keep the ref beside the
    account; the SDK never stores account ids.

Records
    Platforms that keep tokens can skip tokenisation: ``publish_records``, ``withdraw_keys``
    and ``sync_records`` take precomputed ``Record`` / ``BindingKey`` values.

Errors
    RPC failures raise ``numbind.sdk.errors`` types (never raw grpc errors); UNAVAILABLE and
    RESOURCE_EXHAUSTED are retried with jittered backoff under the same request id, so the
    registry answers a retried batch as it answered the first try. A bad number raises
    ``numbind.sdk.phone.InvalidNumber`` naming its position in the input; a bad row value raises
    ValueError naming the field; a sync over its ``max_withdraw`` raises SyncAborted. While
    the registry re-keys its store after a key rotation, ``digest`` and ``list_bucket``
    raise RekeyInProgress (with progress and a retry delay); ``sync`` waits it out.
    Batches run concurrently: when one fails, batches already sent stay published (every
    call is idempotent, so running it again is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import math
import os
import secrets
import sqlite3
import tempfile
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import count
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol.bundle import Bundle, BundleError
from numbind.protocol.digest import (
    DIGEST_BYTES,
    EMPTY_DIGEST,
    MAX_BUCKET_BITS,
    binding_digest,
    bucket16,
    bucket16_range,
)
from numbind.protocol.limits import MAX_ACCOUNT_REF, MAX_BINDINGS, TOKEN_BYTES, instant_problem
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import KeyRotated, NumbindClientError, ServerError
from numbind.sdk.feed import CURSOR_FILE, EventFeed, FeedEvent
from numbind.sdk.phone import DEFAULT_REGION
from numbind.sdk.progress import Meter, ProgressCallback
from numbind.sdk.rekeying import wait_out_rekey
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc

__all__ = [
    "ACCOUNT_REF_KEY_FILE",
    "MAX_BATCH",
    "AccountRefs",
    "BindingKey",
    "BucketDigest",
    "Kind",
    "NumberAccount",
    "PlatformClient",
    "PublishSummary",
    "Record",
    "Row",
    "SyncAborted",
    "SyncSummary",
    "WithdrawSummary",
    "bound_at_problem",
    "choose_bucket_bits",
]

ACCOUNT_REF_KEY_FILE = "account-ref.key"
MAX_BATCH = MAX_BINDINGS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_REF_DOMAIN = b"numbind-account-ref-v1\x00"
_TARGET_BUCKET_ROWS = 256
# A sync starts its comparison over at most this often when the registry's key rotates
# under it (rotations are rare; a loop beyond this is a misconfiguration, e.g. a pinned key).
_ROTATIONS_PER_SYNC = 3
_BUCKETS16 = 1 << MAX_BUCKET_BITS

T = TypeVar("T")


class Kind(enum.IntEnum):
    """What a binding lets the account do with the number (numbind.v1.BindingKind)."""

    LOGIN = 1
    RECOVERY = 2
    PAYMENT = 3
    NOTIFICATION = 4
    OTHER = 5

    @classmethod
    def parse(cls, text: str) -> Kind:
        """Case-insensitive name (``login``, ``Payment``); ValueError for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"kind: want one of {', '.join(k.name for k in cls)}") from None


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (the registry's resolution)."""
    return (moment - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def bound_at_problem(moment: datetime, now: datetime | None = None) -> str | None:
    """Why ``moment`` cannot be a binding's bound_at, or None when it can."""
    return instant_problem(moment, now)


def _check_bound_at(moment: datetime) -> None:
    problem = bound_at_problem(moment)
    if problem is not None:
        raise ValueError(f"bound_at: {problem}")


class NumberAccount(Protocol):
    """Anything naming a number and an account: a Row, or a caller's own type."""

    @property
    def phone(self) -> str: ...
    @property
    def account_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Row:
    """One binding as the platform knows it. The phone stays out of ``repr`` (and logs)."""

    phone: str = field(repr=False)
    account_id: str = field(repr=False)
    bound_at: datetime
    kind: Kind = Kind.LOGIN

    def __post_init__(self) -> None:
        if not self.account_id:
            raise ValueError("account_id: empty")
        _check_bound_at(self.bound_at)
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))


@dataclass(frozen=True, slots=True)
class BindingKey:
    """Names one binding of this platform: a token (under key_id) and an account_ref."""

    token: bytes
    key_id: str
    account_ref: bytes

    def __post_init__(self) -> None:
        _check_token_ref(self.token, self.account_ref)


@dataclass(frozen=True, slots=True)
class Record:
    """A binding with its token already computed, as published and as listed back."""

    token: bytes
    key_id: str
    account_ref: bytes
    bound_at: datetime
    kind: Kind

    def __post_init__(self) -> None:
        _check_token_ref(self.token, self.account_ref)
        if self.bound_at.tzinfo is None:
            raise ValueError("bound_at: no UTC offset")

    @property
    def key(self) -> BindingKey:
        return BindingKey(self.token, self.key_id, self.account_ref)

    def digest(self) -> bytes:
        """This binding's share of its bucket digest (numbind.protocol.digest)."""
        return binding_digest(
            self.key_id, self.token, self.account_ref, to_us(self.bound_at), self.kind
        )


def _check_token_ref(token: bytes, account_ref: bytes) -> None:
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"token: got {len(token)} bytes, want {TOKEN_BYTES}")
    if not 1 <= len(account_ref) <= MAX_ACCOUNT_REF:
        raise ValueError(f"account_ref: got {len(account_ref)} bytes, want 1..{MAX_ACCOUNT_REF}")


class AccountRefs:
    """Derives ``account_ref`` from the platform's own account id with a secret HMAC key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError(f"account-ref secret: got {len(secret)} bytes, want at least 32")
        # Keyed once; each ref copies the keyed state instead of re-deriving the pads.
        self._mac = hmac.new(secret, _REF_DOMAIN, hashlib.sha256)

    def __repr__(self) -> str:
        return "AccountRefs(<secret>)"

    def __call__(self, account_id: str) -> bytes:
        mac = self._mac.copy()
        mac.update(account_id.encode("utf-8"))
        return mac.digest()

    @classmethod
    def from_bundle(cls, bundle: Bundle | Path | str) -> AccountRefs:
        """The secret in ``<bundle dir>/account-ref.key``, created (0600) if absent."""
        directory = bundle.directory if isinstance(bundle, Bundle) else Path(bundle)
        return cls(_load_or_create_secret(directory / ACCOUNT_REF_KEY_FILE))


def _load_or_create_secret(path: Path) -> bytes:
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            # link() never replaces: if two processes race, both end up reading the winner's.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    try:
        text = path.read_text("ascii").strip()
        secret = bytes.fromhex(text)
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{path}: not a hex string") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
    if len(secret) < 32:
        raise BundleError(f"{path}: got {len(secret)} bytes, want at least 32")
    return secret


class SyncAborted(NumbindClientError):
    """A sync planned more withdrawals than ``max_withdraw`` allows; nothing was changed."""


@dataclass(frozen=True)
class BucketDigest:
    bucket: int
    count: int
    digest: bytes


@dataclass(frozen=True)
class PublishSummary:
    rows: int
    inserted: int
    updated: int
    unchanged: int
    # Rows naming a binding already earlier in the same batch (the later one was sent).
    duplicates: int
    batches: int
    seconds: float


@dataclass(frozen=True)
class WithdrawSummary:
    rows: int
    withdrawn: int
    not_found: int
    batches: int
    seconds: float


@dataclass(frozen=True)
class SyncSummary:
    rows: int  # snapshot rows read
    bindings: int  # distinct bindings in the snapshot
    duplicates: int  # rows naming a binding another row already named
    server_bindings: int  # on the registry before the sync, under key_id
    key_id: str
    bucket_bits: int
    buckets_total: int
    buckets_differing: int
    buckets_listed: int
    published: int  # added + changed
    added: int
    changed: int
    withdrawn: int
    dry_run: bool
    # Digests equal after the sync; None on a dry run. False means the registry changed
    # meanwhile (a revocation, a concurrent publish); the next sync picks it up.
    converged: bool | None
    seconds: float


def choose_bucket_bits(rows: int) -> int:
    """About 256 bindings a bucket: log2(rows / 256), clamped to 0..16."""
    if rows <= _TARGET_BUCKET_ROWS:
        return 0
    return max(0, min(MAX_BUCKET_BITS, round(math.log2(rows / _TARGET_BUCKET_ROWS))))


# Inside the SDK a binding is a plain tuple: 10 million dataclasses would be the memory bill.
_Item = tuple[bytes, bytes, int, int]  # token, account_ref, bound_us, kind


def _ts(us: int) -> Timestamp:
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def _us(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _binding_pb(key_id: str, item: _Item) -> common_pb2.Binding:
    token, ref, us, kind = item
    return common_pb2.Binding(
        token=common_pb2.Token(key_id=key_id, value=token),
        account_ref=ref,
        bound_at=_ts(us),
        kind=kind,  # type: ignore[arg-type]  # the enum's ValueType is an int NewType
    )


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


async def _pipeline(
    source: AsyncIterator[T], worker: Callable[[T], Awaitable[None]], in_flight: int
) -> None:
    """Run worker over source with in_flight workers behind a bounded queue.

    The bounded queue is the back-pressure: the source is read only as fast as batches
    complete, so memory holds about 2 * in_flight batches whatever the input size.
    """
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(maxsize=in_flight)

    async def consume() -> None:
        while (entry := await queue.get()) is not None:
            await worker(entry[0])

    try:
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(consume()) for _ in range(in_flight)]
            async for item in source:
                await queue.put((item,))
            for _ in workers:
                await queue.put(None)
    except BaseExceptionGroup as exc:
        # Callers expect the SDK's own exception, not a group of one.
        raise _first_error(exc) from None
    finally:
        # After a failure the source is left mid-way; close it now rather than at GC time.
        if isinstance(source, AsyncGenerator):
            await source.aclose()


async def _chunks(
    source: Iterable[T] | AsyncIterable[T], size: int
) -> AsyncIterator[tuple[int, list[T]]]:
    """(start index, up to size items); yields the loop between slices of a sync source."""
    start, chunk = 0, []
    if isinstance(source, AsyncIterable):
        async for item in source:
            chunk.append(item)
            if len(chunk) == size:
                yield start, chunk
                start, chunk = start + size, []
    else:
        for item in source:
            chunk.append(item)
            if len(chunk) % 1000 == 0:
                # Reading and parsing a file is CPU work on the loop thread: let RPCs breathe.
                await asyncio.sleep(0)
            if len(chunk) == size:
                yield start, chunk
                start, chunk = start + size, []
    if chunk:
        yield start, chunk


class _Store:
    """A snapshot on disk: a temporary SQLite file ordered by (bucket16, token, account_ref).

    The finest (16-bit) bucket counts and digests are kept in memory (2 MB) as rows arrive,
    so any coarser bucket_bits is a fold over them. Only the store's own thread touches the
    connection, which keeps SQLite's blocking calls off the event loop.

    Each row keeps its key id and, for rows tokenised here, its E.164 form: when the
    registry rotates its key during a sync, rows under the old key are tokenised again
    under the new one (``stale`` / ``replace``) instead of the sync failing.
    """

    def __init__(self, directory: Path | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="numbind-sync-", dir=directory)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="numbind-sync-db")
        self._db = sqlite3.connect(
            Path(self._tmp.name) / "snapshot.db", check_same_thread=False, isolation_level=None
        )
        for pragma in (
            "journal_mode = OFF",  # a scratch file: a crash just means starting over
            "synchronous = OFF",
            "cache_size = -65536",  # 64 MiB
            "temp_store = FILE",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(
            """
            CREATE TABLE snap (b16 INTEGER, token BLOB, ref BLOB, bound_us INTEGER, kind INTEGER,
                               key_id TEXT, e164 TEXT,
                               PRIMARY KEY (b16, token, ref)) WITHOUT ROWID;
            CREATE TABLE pub (token BLOB, ref BLOB, bound_us INTEGER, kind INTEGER);
            CREATE TABLE wd (token BLOB, ref BLOB);
            """
        )
        self.key_id = ""
        # Rows arrived under more than one key (the registry rotated during the fill).
        self.mixed = False
        self.written = 0
        self.counts = [0] * _BUCKETS16
        self.digests = [0] * _BUCKETS16

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()
        self._tmp.cleanup()

    # A binding named twice keeps the latest bound_at (then the highest kind): the same
    # answer whichever batch lands first.
    _UPSERT = (
        "INSERT INTO snap VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (b16, token, ref) DO UPDATE "
        "SET bound_us = excluded.bound_us, kind = excluded.kind "
        "WHERE (excluded.bound_us, excluded.kind) > (snap.bound_us, snap.kind)"
    )

    def add(self, key_id: str, items: list[_Item], e164s: Sequence[str] | None = None) -> None:
        if not self.key_id:
            self.key_id = key_id
        elif key_id != self.key_id:
            self.mixed = True
        rows = []
        counts, digests = self.counts, self.digests
        numbers: Iterable[str | None] = e164s if e164s is not None else [None] * len(items)
        for (token, ref, us, kind), e164 in zip(items, numbers, strict=True):
            b16 = bucket16(token)
            counts[b16] += 1
            digests[b16] ^= int.from_bytes(binding_digest(key_id, token, ref, us, kind), "big")
            rows.append((b16, token, ref, us, kind, key_id, e164))
        self._db.execute("BEGIN")
        self._db.executemany(self._UPSERT, rows)
        self._db.execute("COMMIT")
        self.written += len(rows)

    def finish(self) -> int:
        """Distinct bindings; refolds the digests from disk if any binding came twice."""
        (distinct,) = self._db.execute("SELECT count(*) FROM snap").fetchone()
        if distinct != self.written:
            self.refold()
        return int(distinct)

    def refold(self) -> None:
        """Counts and digests again from disk, each row under its own key id."""
        counts, digests = [0] * _BUCKETS16, [0] * _BUCKETS16
        rows = self._db.execute("SELECT b16, token, ref, bound_us, kind, key_id FROM snap")
        for b16, token, ref, us, kind, key_id in rows:
            counts[b16] += 1
            digests[b16] ^= int.from_bytes(binding_digest(key_id, token, ref, us, kind), "big")
        self.counts, self.digests = counts, digests
        self.written = sum(counts)

    def keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT DISTINCT key_id FROM snap")}

    def stale(self, key_id: str, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows under another key: (b16, token, ref, bound_us, kind, e164)."""
        return self._db.execute(
            "SELECT b16, token, ref, bound_us, kind, e164 FROM snap WHERE key_id != ? LIMIT ?",
            (key_id, limit),
        ).fetchall()

    def replace(self, rows: list[tuple[Any, ...]], tokens: list[bytes], key_id: str) -> None:
        """Rows from ``stale``, now under ``key_id`` with these tokens."""
        self._db.execute("BEGIN")
        self._db.executemany(
            "DELETE FROM snap WHERE b16 = ? AND token = ? AND ref = ?", [r[:3] for r in rows]
        )
        self._db.executemany(
            self._UPSERT,
            [
                (bucket16(t), t, ref, us, kind, key_id, e164)
                for (_, _, ref, us, kind, e164), t in zip(rows, tokens, strict=True)
            ],
        )
        self._db.execute("COMMIT")
        self.key_id, self.mixed = key_id, False

    def reset_plan(self) -> None:
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM pub")
        self._db.execute("DELETE FROM wd")
        self._db.execute("COMMIT")

    def buckets(self, bits: int) -> dict[int, tuple[int, bytes]]:
        """Non-empty buckets at ``bits``: bucket -> (count, digest)."""
        shift = MAX_BUCKET_BITS - bits
        counts: dict[int, int] = {}
        digests: dict[int, int] = {}
        for b16, n in enumerate(self.counts):
            if n:
                b = b16 >> shift
                counts[b] = counts.get(b, 0) + n
                digests[b] = digests.get(b, 0) ^ self.digests[b16]
        return {b: (n, digests[b].to_bytes(DIGEST_BYTES, "big")) for b, n in counts.items()}

    def bucket(self, bits: int, bucket: int) -> dict[tuple[bytes, bytes], tuple[int, int]]:
        lo, hi = bucket16_range(bucket, bits)
        rows = self._db.execute(
            "SELECT token, ref, bound_us, kind FROM snap WHERE b16 BETWEEN ? AND ?", (lo, hi)
        )
        return {(t, r): (us, k) for t, r, us, k in rows}

    def plan(self, publish: list[_Item], withdraw: list[tuple[bytes, bytes]]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO pub VALUES (?, ?, ?, ?)", publish)
        self._db.executemany("INSERT INTO wd VALUES (?, ?)", withdraw)
        self._db.execute("COMMIT")

    def cursor(self, sql: str) -> sqlite3.Cursor:
        return self._db.execute(sql)

    async def batches(self, sql: str, size: int) -> AsyncIterator[tuple[int, list[Any]]]:
        cursor = await self.run(self.cursor, sql)
        start = 0
        while rows := await self.run(cursor.fetchmany, size):
            yield start, rows
            start += len(rows)


class PlatformClient:
    """The platform side of the registry: publish, withdraw, digest, list and sync bindings.

    Use as ``async with PlatformClient(bundle) as client``. ``batch_size`` bindings go in one
    request (at most 10,000) with ``in_flight`` requests at once; ``progress`` is called after
    every batch with rows done, total (if known) and rate.
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
        self._stub: platforms_pb2_grpc.PlatformsAsyncStub | None = None
        # Request ids: unique per client, stable across the retries of one batch.
        self._session = uuid.uuid4().hex
        self._seq = count(1)

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
        self._stub = None

    # ---- plumbing -------------------------------------------------------------------------

    def _ensure(self) -> tuple[platforms_pb2_grpc.PlatformsAsyncStub, Tokenizer]:
        # Created on first use, inside the running loop that grpc.aio binds them to.
        if self._channel is None:
            self._channel = secure_channel(self.bundle)
        if self._stub is None or self._tokenizer is None:
            self._stub = platforms_pb2_grpc.PlatformsStub(self._channel)
            self._tokenizer = Tokenizer(
                self._channel, key_id=self._want_key, region=self._region, in_flight=2
            )
        return self._stub, self._tokenizer

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
        at-least-once, so apply events by ``order_id``. Reconnects with backoff; with
        ``follow=False`` it stops once caught up.
        """
        self._ensure()
        assert self._channel is not None
        path = cursor_file if cursor_file is not None else self.bundle.directory / CURSOR_FILE
        feed = EventFeed(self._channel, path, heartbeat_seconds=heartbeat_seconds)
        return feed.events(follow=follow)

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
        _, tokenizer = self._ensure()
        return (await tokenizer.key()).key_id

    def _request_id(self, verb: str) -> str:
        return f"{verb}-{self._session}-{next(self._seq)}"

    async def _items(
        self, rows: Sequence[NumberAccount], start: int
    ) -> tuple[str, list[tuple[bytes, bytes]], list[str]]:
        """(key id, (token, account_ref) per row, E.164 per row), in order. The key id is
        the tokens' own: the tokenizer may move to a new key between calls after a
        rotation. InvalidNumber names the global position."""
        _, tokenizer = self._ensure()
        refs = self.account_refs

        def prepare() -> tuple[list[str], list[bytes]]:
            # phonenumbers and HMAC are plain CPU work: off the loop thread.
            e164s = tokenizer.normalise((r.phone for r in rows), start)
            return e164s, [refs(r.account_id) for r in rows]

        e164s, account_refs = await asyncio.to_thread(prepare)
        key = await tokenizer.key()
        tokens = await tokenizer.tokenize_e164(e164s, key=key)
        pairs = [(t.token, ref) for t, ref in zip(tokens, account_refs, strict=True)]
        return key.key_id, pairs, e164s

    async def _send_publish(self, key_id: str, items: list[_Item]) -> tuple[int, int, int, int]:
        """(inserted, updated, unchanged, duplicates) for one batch."""
        stub, _ = self._ensure()
        # The registry upserts by (token, account_ref); a repeat inside one request is
        # ambiguous, so the later row wins here.
        unique = {(i[0], i[1]): i for i in items}
        request = platforms_pb2.PublishBindingsRequest(
            request_id=self._request_id("pub"),
            bindings=[_binding_pb(key_id, i) for i in unique.values()],
        )
        resp: platforms_pb2.PublishBindingsResponse = await call_with_retry(
            lambda: stub.PublishBindings(request, timeout=self._timeout), self._retry
        )
        return resp.inserted, resp.updated, resp.unchanged, len(items) - len(unique)

    async def _send_withdraw(self, key_id: str, keys: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        stub, _ = self._ensure()
        unique = dict.fromkeys(keys)
        request = platforms_pb2.WithdrawBindingsRequest(
            request_id=self._request_id("wd"),
            bindings=[
                common_pb2.BindingKey(
                    token=common_pb2.Token(key_id=key_id, value=token), account_ref=ref
                )
                for token, ref in unique
            ],
        )
        resp: platforms_pb2.WithdrawBindingsResponse = await call_with_retry(
            lambda: stub.WithdrawBindings(request, timeout=self._timeout), self._retry
        )
        # A key repeated in the input names a binding the first copy already withdrew.
        return resp.withdrawn, resp.not_found + len(keys) - len(unique)

    async def _publish_batches(
        self,
        batches: AsyncIterator[tuple[int, list[T]]],
        to_items: Callable[[list[T], int], Awaitable[tuple[str, list[_Item]]]],
        meter: Meter,
    ) -> PublishSummary:
        totals = [0, 0, 0, 0, 0]  # inserted, updated, unchanged, duplicates, batches

        async def work(batch: tuple[int, list[T]]) -> None:
            start, rows = batch
            key_id, items = await to_items(rows, start)
            for i, n in enumerate(await self._send_publish(key_id, items)):
                totals[i] += n
            totals[4] += 1
            meter.add(len(rows))

        await _pipeline(batches, work, self._in_flight)
        inserted, updated, unchanged, duplicates, n_batches = totals
        return PublishSummary(
            meter.done, inserted, updated, unchanged, duplicates, n_batches, meter.seconds
        )

    async def _withdraw_batches(
        self,
        batches: AsyncIterator[tuple[int, list[T]]],
        to_keys: Callable[[list[T], int], Awaitable[tuple[str, list[tuple[bytes, bytes]]]]],
        meter: Meter,
    ) -> WithdrawSummary:
        totals = [0, 0, 0]  # withdrawn, not_found, batches

        async def work(batch: tuple[int, list[T]]) -> None:
            start, rows = batch
            key_id, keys = await to_keys(rows, start)
            withdrawn, not_found = await self._send_withdraw(key_id, keys)
            totals[0] += withdrawn
            totals[1] += not_found
            totals[2] += 1
            meter.add(len(rows))

        await _pipeline(batches, work, self._in_flight)
        return WithdrawSummary(meter.done, totals[0], totals[1], totals[2], meter.seconds)

    # ---- publish / withdraw ---------------------------------------------------------------

    async def publish(
        self,
        rows: Iterable[Row] | AsyncIterable[Row],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> PublishSummary:
        """Tokenise and upsert rows, streamed in pipelined batches. Idempotent."""

        async def to_items(chunk: list[Row], start: int) -> tuple[str, list[_Item]]:
            key_id, pairs, _ = await self._items(chunk, start)
            items = [
                (token, ref, to_us(r.bound_at), int(r.kind))
                for (token, ref), r in zip(pairs, chunk, strict=True)
            ]
            return key_id, items

        meter = Meter("publish", total, progress or self._progress)
        return await self._publish_batches(_chunks(rows, self._batch), to_items, meter)

    async def publish_records(
        self,
        records: Iterable[Record] | AsyncIterable[Record],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> PublishSummary:
        """Upsert precomputed records (no tokenisation). A batch holds one key id."""

        async def to_items(chunk: list[Record], _: int) -> tuple[str, list[_Item]]:
            return chunk[0].key_id, [
                (r.token, r.account_ref, to_us(r.bound_at), int(r.kind)) for r in chunk
            ]

        meter = Meter("publish", total, progress or self._progress)
        batches = _chunks_by_key(records, self._batch)
        return await self._publish_batches(batches, to_items, meter)

    async def withdraw(
        self,
        rows: Iterable[NumberAccount] | AsyncIterable[NumberAccount],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> WithdrawSummary:
        """Withdraw the bindings of (phone, account_id) pairs; other Row fields are unused."""

        async def to_keys(
            chunk: list[NumberAccount], start: int
        ) -> tuple[str, list[tuple[bytes, bytes]]]:
            key_id, pairs, _ = await self._items(chunk, start)
            return key_id, pairs

        meter = Meter("withdraw", total, progress or self._progress)
        return await self._withdraw_batches(_chunks(rows, self._batch), to_keys, meter)

    async def withdraw_keys(
        self,
        keys: Iterable[BindingKey] | AsyncIterable[BindingKey],
        *,
        total: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> WithdrawSummary:
        """Withdraw bindings named by precomputed keys."""

        async def to_keys(chunk: list[BindingKey], _: int) -> tuple[str, list[tuple[bytes, bytes]]]:
            return chunk[0].key_id, [(k.token, k.account_ref) for k in chunk]

        meter = Meter("withdraw", total, progress or self._progress)
        batches = _chunks_by_key(keys, self._batch)
        return await self._withdraw_batches(batches, to_keys, meter)

    # ---- reading back ---------------------------------------------------------------------

    async def digest(self, bucket_bits: int, key_id: str | None = None) -> dict[int, BucketDigest]:
        """The registry's non-empty buckets of this platform's bindings (a missing one is
        empty). ``key_id`` None means this client's key; "" means every key."""
        _check_bits(bucket_bits)
        stub, _ = self._ensure()
        kid = await self.key_id() if key_id is None else key_id
        request = platforms_pb2.GetDigestRequest(bucket_bits=bucket_bits, key_id=kid)
        resp: platforms_pb2.GetDigestResponse = await call_with_retry(
            lambda: stub.GetDigest(request, timeout=self._timeout), self._retry
        )
        if resp.bucket_bits != bucket_bits:
            raise ServerError(f"bucket_bits: got {resp.bucket_bits}, want {bucket_bits}")
        return {
            b.bucket: BucketDigest(b.bucket, b.count, bytes(b.digest) or EMPTY_DIGEST)
            for b in resp.buckets
        }

    async def _list_pages(
        self,
        bucket_bits: int,
        bucket: int,
        key_id: str,
        page_size: int,
        *,
        wait_rekey: bool = False,
        progress: ProgressCallback | None = None,
    ) -> AsyncIterator[list[common_pb2.Binding]]:
        """Pages of one bucket. With ``wait_rekey`` a store re-key is waited out (reported
        to ``progress``); by default it raises RekeyInProgress."""
        stub, _ = self._ensure()
        page_token = ""
        while True:
            request = platforms_pb2.ListBindingsRequest(
                bucket_bits=bucket_bits,
                bucket=bucket,
                key_id=key_id,
                page_size=page_size,
                page_token=page_token,
            )
            call = partial(
                call_with_retry,
                partial(stub.ListBindings, request, timeout=self._timeout),
                self._retry,
            )
            if wait_rekey:
                resp: platforms_pb2.ListBindingsResponse = await wait_out_rekey(call, progress)
            else:
                resp = await call()
            yield list(resp.bindings)
            page_token = resp.next_page_token
            if not page_token:
                return

    async def list_bucket(
        self,
        bucket_bits: int,
        bucket: int,
        *,
        key_id: str | None = None,
        page_size: int = 5000,
    ) -> AsyncIterator[Record]:
        """Every active binding of this platform in one bucket, page by page."""
        _check_bits(bucket_bits)
        if not 0 <= bucket < 1 << bucket_bits:
            raise ValueError(f"bucket: got {bucket}, want 0..{(1 << bucket_bits) - 1}")
        kid = await self.key_id() if key_id is None else key_id
        async for page in self._list_pages(bucket_bits, bucket, kid, page_size):
            for b in page:
                try:
                    kind = Kind(b.kind)
                except ValueError:
                    raise ServerError(f"kind: registry sent unknown value {b.kind}") from None
                yield Record(
                    bytes(b.token.value),
                    b.token.key_id,
                    bytes(b.account_ref),
                    from_us(_us(b.bound_at)),
                    kind,
                )

    # ---- reconciliation -------------------------------------------------------------------

    async def sync(
        self,
        snapshot: Iterable[Row] | AsyncIterable[Row],
        *,
        bucket_bits: int | None = None,
        total: int | None = None,
        dry_run: bool = False,
        max_withdraw: int | None = None,
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
        not one. ``dry_run`` stops after planning; ``max_withdraw`` raises SyncAborted before any
        change when the plan withdraws more (a truncated export must not empty the
        registry). A binding named twice keeps its latest bound_at.
        """
        callback = progress or self._progress

        async def fill(store: _Store) -> int:
            meter = Meter("tokenise", total, callback)

            async def work(batch: tuple[int, list[Row]]) -> None:
                start, rows = batch
                key_id, pairs, e164s = await self._items(rows, start)
                items = [
                    (token, ref, to_us(r.bound_at), int(r.kind))
                    for (token, ref), r in zip(pairs, rows, strict=True)
                ]
                await store.run(store.add, key_id, items, e164s)
                meter.add(len(rows))

            await _pipeline(_chunks(snapshot, self._batch), work, self._in_flight)
            return meter.done

        return await self._sync(fill, bucket_bits, dry_run, max_withdraw, work_dir, callback)

    async def sync_records(
        self,
        snapshot: Iterable[Record] | AsyncIterable[Record],
        *,
        bucket_bits: int | None = None,
        total: int | None = None,
        dry_run: bool = False,
        max_withdraw: int | None = None,
        work_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncSummary:
        """``sync`` for platforms that keep tokens: every record under one key id."""
        callback = progress or self._progress

        async def fill(store: _Store) -> int:
            meter = Meter("load", total, callback)
            async for _, chunk in _chunks(snapshot, self._batch):
                items = [(r.token, r.account_ref, to_us(r.bound_at), int(r.kind)) for r in chunk]
                await store.run(store.add, _one_key(chunk, meter.done), items)
                meter.add(len(chunk))
            return meter.done

        return await self._sync(fill, bucket_bits, dry_run, max_withdraw, work_dir, callback)

    async def _settle(self, store: _Store, callback: ProgressCallback | None) -> str:
        """The key the registry holds bindings under (its active key), with every snapshot
        row tokenised under it."""
        _, tokenizer = self._ensure()
        key = await tokenizer.refresh()
        if (await store.run(store.keys)) - {key.key_id}:
            meter = Meter("re-tokenise", None, callback)
            while rows := await store.run(store.stale, key.key_id, self._batch):
                if any(r[5] is None for r in rows):
                    raise KeyRotated(
                        f"records are under {store.key_id}, but the registry now holds every "
                        f"binding under {key.key_id}: tokenise them under it and sync again",
                        key.key_id,
                    )
                results = await tokenizer.tokenize_e164([r[5] for r in rows], key=key)
                await store.run(store.replace, rows, [t.token for t in results], key.key_id)
                meter.add(len(rows))
            await store.run(store.refold)
        store.key_id = key.key_id
        return key.key_id

    async def _plan(
        self,
        store: _Store,
        key_id: str,
        distinct: int,
        bucket_bits: int | None,
        callback: ProgressCallback | None,
    ) -> _Plan:
        """Compare digests, list the buckets that differ, and plan publish / withdraw."""
        bits = choose_bucket_bits(distinct) if bucket_bits is None else bucket_bits
        remote = await wait_out_rekey(lambda: self.digest(bits, key_id), callback)
        server_total = sum(b.count for b in remote.values())
        if bucket_bits is None and choose_bucket_bits(server_total) > bits:
            # The registry holds far more than the snapshot: finer buckets keep lists short.
            bits = choose_bucket_bits(server_total)
            remote = await wait_out_rekey(lambda: self.digest(bits, key_id), callback)
        local = await store.run(store.buckets, bits)
        differing = _differing(local, remote)

        planned = [0, 0, 0, 0]  # added, changed, withdrawn, buckets listed
        meter = Meter("compare", len(differing), callback, unit="bucket")

        async def compare(bucket: int) -> None:
            server: dict[tuple[bytes, bytes], tuple[int, int]] = {}
            pages = self._list_pages(
                bits, bucket, key_id, MAX_BATCH, wait_rekey=True, progress=callback
            )
            async for page in pages:
                for b in page:
                    server[(bytes(b.token.value), bytes(b.account_ref))] = (
                        _us(b.bound_at),
                        int(b.kind),
                    )
            mine = await store.run(store.bucket, bits, bucket)
            publish: list[_Item] = []
            for key, value in mine.items():
                theirs = server.pop(key, None)
                if theirs != value:
                    publish.append((*key, *value))
                    planned[1 if theirs is not None else 0] += 1
            withdraw = list(server)
            planned[2] += len(withdraw)
            planned[3] += 1
            await store.run(store.plan, publish, withdraw)
            meter.add(1)

        await _pipeline(_iterate(differing), compare, self._in_flight)
        added, changed, withdrawn, listed = planned
        return _Plan(bits, server_total, local, differing, (added, changed, withdrawn, listed))

    async def _sync(
        self,
        fill: Callable[[_Store], Awaitable[int]],
        bucket_bits: int | None,
        dry_run: bool,
        max_withdraw: int | None,
        work_dir: Path | None,
        callback: ProgressCallback | None,
    ) -> SyncSummary:
        began = time.monotonic()
        if bucket_bits is not None:
            _check_bits(bucket_bits)
        store = _Store(work_dir)
        try:
            rows = await fill(store)
            distinct = await store.run(store.finish)
            # A rotation makes the registry hold every binding under its new key. Before
            # comparing (and again if it happens while comparing) the snapshot is moved to
            # that key; a re-key under way is waited out. Nothing is changed on the registry
            # until a comparison has finished under the key it holds bindings under.
            for attempt in range(_ROTATIONS_PER_SYNC + 1):
                key_id = await self._settle(store, callback)
                await store.run(store.reset_plan)
                try:
                    plan = await self._plan(store, key_id, distinct, bucket_bits, callback)
                    break
                except KeyRotated:
                    if attempt == _ROTATIONS_PER_SYNC:
                        raise
            bits, server_total, local, differing = (
                plan.bits,
                plan.server_total,
                plan.local,
                plan.differing,
            )
            added, changed, withdrawn, listed = plan.counts
            if max_withdraw is not None and withdrawn > max_withdraw and not dry_run:
                raise SyncAborted(
                    f"sync would withdraw {withdrawn} of {server_total} bindings, more than "
                    f"max_withdraw={max_withdraw}; nothing changed"
                )

            converged: bool | None = None
            if not dry_run:
                if added + changed:

                    async def as_items(chunk: list[_Item], _: int) -> tuple[str, list[_Item]]:
                        return key_id, chunk

                    await self._publish_batches(
                        store.batches("SELECT * FROM pub", self._batch),
                        as_items,
                        Meter("publish", added + changed, callback),
                    )
                if withdrawn:

                    async def as_keys(
                        chunk: list[tuple[bytes, bytes]], _: int
                    ) -> tuple[str, list[tuple[bytes, bytes]]]:
                        return key_id, chunk

                    await self._withdraw_batches(
                        store.batches("SELECT * FROM wd", self._batch),
                        as_keys,
                        Meter("withdraw", withdrawn, callback),
                    )
                try:
                    after = await wait_out_rekey(lambda: self.digest(bits, key_id), callback)
                    converged = not _differing(local, after)
                except KeyRotated:  # rotated since the comparison: the next sync settles it
                    converged = False

            return SyncSummary(
                rows=rows,
                bindings=distinct,
                duplicates=rows - distinct,
                server_bindings=server_total,
                key_id=key_id,
                bucket_bits=bits,
                buckets_total=1 << bits,
                buckets_differing=len(differing),
                buckets_listed=listed,
                published=added + changed,
                added=added,
                changed=changed,
                withdrawn=withdrawn,
                dry_run=dry_run,
                converged=converged,
                seconds=time.monotonic() - began,
            )
        finally:
            await asyncio.to_thread(store.close)


@dataclass(frozen=True)
class _Plan:
    bits: int
    server_total: int
    local: dict[int, tuple[int, bytes]]
    differing: list[int]
    counts: tuple[int, int, int, int]  # added, changed, withdrawn, buckets listed


def _check_bits(bits: int) -> None:
    if not 0 <= bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket_bits: got {bits}, want 0..{MAX_BUCKET_BITS}")


def _differing(local: dict[int, tuple[int, bytes]], remote: dict[int, BucketDigest]) -> list[int]:
    empty = (0, EMPTY_DIGEST)
    buckets = sorted(set(local) | set(remote))
    return [
        b
        for b in buckets
        if local.get(b, empty) != ((remote[b].count, remote[b].digest) if b in remote else empty)
    ]


async def _iterate(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


class _Keyed(Protocol):
    @property
    def key_id(self) -> str: ...


def _one_key(chunk: Sequence[_Keyed], start: int) -> str:
    key_id = chunk[0].key_id
    for i, item in enumerate(chunk):
        if item.key_id != key_id:
            raise ValueError(f"key_id: item {start + i} is under {item.key_id}, want {key_id}")
    return key_id


K = TypeVar("K", bound=_Keyed)


async def _chunks_by_key(
    source: Iterable[K] | AsyncIterable[K], size: int
) -> AsyncIterator[tuple[int, list[K]]]:
    """Like _chunks, but a batch never mixes key ids (a request carries one per item, but
    one key a batch keeps a rotation's two populations apart)."""
    start = 0
    async for _, chunk in _chunks(source, size):
        run_start = 0
        for i in range(1, len(chunk) + 1):
            if i == len(chunk) or chunk[i].key_id != chunk[run_start].key_id:
                yield start + run_start, chunk[run_start:i]
                run_start = i
        start += len(chunk)
