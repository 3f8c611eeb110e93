"""The sync's scratch copy of a platform's snapshot, on disk, with its bucket digests.

A temporary SQLite file ordered by (bucket16, token, account_ref): ~200 bytes a binding, so
a sync of tens of millions of bindings holds only per-bucket accumulators in memory.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from numbind.protocol.digest import (
    EMPTY_DIGEST,
    MAX_BUCKET_BITS,
    binding_digest,
    bucket16,
    bucket16_range,
    fold,
)
from numbind.sdk.model import BucketDigest, Item

__all__ = ["SnapshotStore", "check_bits", "choose_bucket_bits", "differing"]

T = TypeVar("T")
_TARGET_BUCKET_ROWS = 256
_BUCKETS16 = 1 << MAX_BUCKET_BITS

# A planned publish: the binding and its 1-based position in the caller's snapshot.
Planned = tuple[bytes, bytes, int, int, int]
# A row under another key than the sync's: (b16, token, ref, bound_us, kind, E.164 or None).
Stale = tuple[int, bytes, bytes, int, int, str | None]


def choose_bucket_bits(rows: int) -> int:
    """About 256 bindings a bucket: log2(rows / 256), clamped to 0..16."""
    if rows <= _TARGET_BUCKET_ROWS:
        return 0
    return max(0, min(MAX_BUCKET_BITS, round(math.log2(rows / _TARGET_BUCKET_ROWS))))


def check_bits(bits: int) -> None:
    if not 0 <= bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket_bits: got {bits}, want 0..{MAX_BUCKET_BITS}")


def differing(local: dict[int, tuple[int, bytes]], remote: dict[int, BucketDigest]) -> list[int]:
    """Buckets whose count or digest differ between the snapshot and the registry."""
    empty = (0, EMPTY_DIGEST)
    buckets = sorted(set(local) | set(remote))
    return [
        b
        for b in buckets
        if local.get(b, empty) != ((remote[b].count, remote[b].digest) if b in remote else empty)
    ]


class SnapshotStore:
    """A snapshot on disk, with the finest (16-bit) bucket counts and digests in memory.

    The accumulators (2 MB) grow as rows arrive, so any coarser bucket_bits is a fold over
    them. Only the store's own thread touches the connection, which keeps SQLite's blocking
    calls off the event loop: call methods through ``run``.

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
                               pos INTEGER, key_id TEXT, e164 TEXT,
                               PRIMARY KEY (b16, token, ref)) WITHOUT ROWID;
            CREATE TABLE pub (token BLOB, ref BLOB, bound_us INTEGER, kind INTEGER, pos INTEGER);
            CREATE TABLE wd (token BLOB, ref BLOB);
            CREATE TABLE skipped AS SELECT * FROM snap WHERE 0;
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
    _ON_CONFLICT = (
        "ON CONFLICT (b16, token, ref) DO UPDATE "
        "SET bound_us = excluded.bound_us, kind = excluded.kind, pos = excluded.pos "
        "WHERE (excluded.bound_us, excluded.kind) > (snap.bound_us, snap.kind)"
    )

    def add(
        self, key_id: str, items: list[Item], start: int, e164s: Sequence[str] | None = None
    ) -> None:
        """Add bindings that are the snapshot's rows ``start + 1`` onwards, tokenised under
        ``key_id`` (from ``e164s``, when they were tokenised here)."""
        if not self.key_id:
            self.key_id = key_id
        elif key_id != self.key_id:
            self.mixed = True
        rows = []
        counts, digests = self.counts, self.digests
        numbers: Iterable[str | None] = e164s if e164s is not None else [None] * len(items)
        for pos, ((token, ref, us, kind), e164) in enumerate(
            zip(items, numbers, strict=True), start + 1
        ):
            b16 = bucket16(token)
            counts[b16] += 1
            digests[b16] ^= int.from_bytes(binding_digest(key_id, token, ref, us, kind), "big")
            rows.append((b16, token, ref, us, kind, pos, key_id, e164))
        self._db.execute("BEGIN")
        self._db.executemany(
            f"INSERT INTO snap VALUES (?, ?, ?, ?, ?, ?, ?, ?) {self._ON_CONFLICT}", rows
        )
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

    def stale(self, key_id: str, limit: int) -> list[Stale]:
        """Up to ``limit`` rows under another key than ``key_id``."""
        return self._db.execute(
            "SELECT b16, token, ref, bound_us, kind, e164 FROM snap WHERE key_id != ? LIMIT ?",
            (key_id, limit),
        ).fetchall()

    def replace(self, rows: list[Stale], tokens: list[bytes], key_id: str) -> None:
        """Rows from ``stale``, now under ``key_id`` with these tokens; each keeps its
        position in the caller's snapshot."""
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO snap SELECT ?, ?, ref, bound_us, kind, pos, ?, e164 FROM snap "
            f"WHERE b16 = ? AND token = ? AND ref = ? {self._ON_CONFLICT}",
            [
                (bucket16(t), t, key_id, b16, token, ref)
                for (b16, token, ref, *_), t in zip(rows, tokens, strict=True)
            ],
        )
        self._db.executemany(
            "DELETE FROM snap WHERE b16 = ? AND token = ? AND ref = ?", [r[:3] for r in rows]
        )
        self._db.execute("COMMIT")
        self.key_id, self.mixed = key_id, False

    def reset_plan(self) -> None:
        """Forget a plan (a rotation restarts the comparison): rows it skipped as revoked
        return to the snapshot, to be tokenised again and checked under the new key."""
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM pub")
        self._db.execute("DELETE FROM wd")
        restored = self._db.execute("SELECT * FROM skipped").fetchall()
        self._db.executemany(
            f"INSERT INTO snap VALUES (?, ?, ?, ?, ?, ?, ?, ?) {self._ON_CONFLICT}", restored
        )
        self._db.execute("DELETE FROM skipped")
        self._db.execute("COMMIT")
        counts, digests = self.counts, self.digests
        for b16, token, ref, us, kind, _, key_id, _ in restored:
            counts[b16] += 1
            digests[b16] ^= int.from_bytes(binding_digest(key_id, token, ref, us, kind), "big")

    def drop(self, planned: list[Planned]) -> None:
        """Take these bindings out of the snapshot (and its digests) for this comparison:
        ``reset_plan`` puts them back."""
        keys = [(bucket16(t), t, r) for t, r, *_ in planned]
        where = "WHERE b16 = ? AND token = ? AND ref = ?"
        self._db.execute("BEGIN")
        rows = [
            row
            for key in keys
            for row in self._db.execute(
                f"SELECT b16, token, ref, bound_us, kind, key_id FROM snap {where}", key
            )
        ]
        self._db.executemany(f"INSERT INTO skipped SELECT * FROM snap {where}", keys)
        self._db.executemany(f"DELETE FROM snap {where}", keys)
        self._db.execute("COMMIT")
        counts, digests = self.counts, self.digests
        for b16, token, ref, us, kind, key_id in rows:
            counts[b16] -= 1
            digests[b16] ^= int.from_bytes(binding_digest(key_id, token, ref, us, kind), "big")

    def buckets(self, bits: int) -> dict[int, tuple[int, bytes]]:
        """Non-empty buckets at ``bits``: bucket -> (count, digest)."""
        return {b: (n, digest) for b, n, digest in fold(self.counts, self.digests, bits)}

    def bucket(self, bits: int, bucket: int) -> dict[tuple[bytes, bytes], tuple[int, int, int]]:
        """(token, account_ref) -> (bound_us, kind, position) of one bucket's bindings."""
        lo, hi = bucket16_range(bucket, bits)
        rows = self._db.execute(
            "SELECT token, ref, bound_us, kind, pos FROM snap WHERE b16 BETWEEN ? AND ?",
            (lo, hi),
        )
        return {(t, r): (us, k, pos) for t, r, us, k, pos in rows}

    def plan(self, publish: list[Planned], withdraw: list[tuple[bytes, bytes]]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO pub VALUES (?, ?, ?, ?, ?)", publish)
        self._db.executemany("INSERT INTO wd VALUES (?, ?)", withdraw)
        self._db.execute("COMMIT")

    def _cursor(self, sql: str) -> sqlite3.Cursor:
        return self._db.execute(sql)

    async def _batches(self, sql: str, size: int) -> AsyncIterator[tuple[int, list[Any]]]:
        cursor = await self.run(self._cursor, sql)
        start = 0
        while rows := await self.run(cursor.fetchmany, size):
            yield start, rows
            start += len(rows)

    def planned_publishes(self, size: int) -> AsyncIterator[tuple[int, list[Planned]]]:
        return self._batches("SELECT token, ref, bound_us, kind, pos FROM pub", size)

    def planned_withdrawals(
        self, size: int
    ) -> AsyncIterator[tuple[int, list[tuple[bytes, bytes]]]]:
        return self._batches("SELECT token, ref FROM wd", size)
