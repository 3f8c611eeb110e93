"""The store re-key after a key rotation, beside its physical floor.

Floor: raw libsodium crypto_scalarmult_ristretto255 calls per second on one core, times
the cores: the re-key does one multiplication per row (Delta * token), so that is what a
machine could do if it did nothing else. Measured: N bindings of one platform, seeded
straight into the store, then a real rotation (the token service's KeyRing makes the key
and Delta; the store begins the re-key) and the registry's RekeyRunner, from start to
DONE: reading batches, multiplying, recomputing each binding's bucket and digest, writing
each batch in its own transaction with the cursor. Run with the worker-process pool the
registry uses, and with a thread pool for comparison. PostgreSQL too when
NUMBIND_TEST_DATABASE_URL is set.

    .venv/bin/python -m bench.rekey [--rows 200000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.domain.types import Binding, BindingKind, Token, now_us
from numbind.registry.keys import KeyRing
from numbind.registry.services.rekey import RekeyRunner, RekeySettings, convert
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import bindings as store
from numbind.registry.storage import keymap, principals
from numbind.registry.storage.db import Database
from sqlalchemy.orm import Session

from bench._harness import read_tokens, row, write_tokens
from bench.tokens import scalarmult_floor

PG_ENV = "NUMBIND_TEST_DATABASE_URL"


def _seed(settings: Settings, tokens: Path, rows: int) -> Database:
    if settings.database_url:
        from bench.publish import reset_postgres

        reset_postgres(settings.database_url)
    operator.init(settings, registry_address="127.0.0.1:1")
    db = Database(settings.effective_database_url)
    platform = db.transact(lambda s: principals.register(s, "platform", "bench-rekey").pk)
    keys = KeyRing(db, settings.keys_dir)
    keys.reload()
    active = keys.active().key_id
    now = now_us()
    batch: list[Binding] = []
    for i, token in zip(range(rows), read_tokens(tokens), strict=False):
        batch.append(Binding(Token(active, token), b"acct-%d" % i, now - 10**9, BindingKind.LOGIN))
        if len(batch) == 10_000 or i == rows - 1:
            db.transact(partial(store.upsert, batch=store.prepare(platform, batch, now)))
            batch = []
    return db


def _rotate(db: Database, keys: KeyRing) -> None:
    """What AdminService.rotate_key does: the token side makes the key and Delta, the store
    side begins the re-key, in one transaction."""

    def act(session: Session) -> None:
        keymap.require_no_rekey(session)
        rotation = keys.create_active(session)
        assert rotation.previous_key_id is not None and rotation.delta is not None
        keymap.begin_rekey(
            session, rotation.previous_key_id, rotation.key.key_id, rotation.delta, now_us()
        )

    db.transact(act)


async def _run(db: Database, executor: Executor, batch: int, workers: int) -> float:
    runner = RekeyRunner(
        db,
        TokenMapper(db),
        executor,
        RekeySettings(batch_rows=batch, lease_seconds=60.0, in_flight=workers + 1),
    )
    start = time.perf_counter()
    runner.start()
    try:
        while True:
            status = await db.run(keymap.latest_rekey, write=False)
            assert status is not None
            if not status.running:
                return time.perf_counter() - start
            await asyncio.sleep(0.02)
    finally:
        await runner.close()


def measure(url: str | None, tokens: Path, rows: int, batch: int, kind: str) -> float:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="numbind-bench-rekey-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url)
        db = _seed(settings, tokens, rows)
        try:
            keys = KeyRing(db, settings.keys_dir)
            keys.reload()
            _rotate(db, keys)
            executor: Executor = (
                ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn"))
                if kind == "processes"
                else ThreadPoolExecutor(cores)
            )
            with executor:
                # Workers started and the re-key's module imported before the clock starts,
                # as in a registry that has been serving.
                list(
                    executor.map(
                        convert, range(cores), [bytes(32)] * cores, [""] * cores, [[]] * cores
                    )
                )
                elapsed = asyncio.run(_run(db, executor, batch, cores))
        finally:
            db.close()
    return rows / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"re-key (Delta * token per stored row), {args.rows:,} bindings, {cores} cores")
    floor = scalarmult_floor()
    row("raw crypto_scalarmult_ristretto255, 1 core", floor, "mults/s")
    backends: list[tuple[str, str | None]] = [("SQLite", None)]
    if os.environ.get(PG_ENV):
        backends.append(("PostgreSQL", os.environ[PG_ENV]))
    with tempfile.TemporaryDirectory(prefix="numbind-bench-tokens-") as tmp:
        tokens = write_tokens(Path(tmp) / "tokens.bin", args.rows)
        for name, url in backends:
            for kind in ("processes", "threads"):
                rate = measure(url, tokens, args.rows, args.batch, kind)
                row(
                    f"re-key {name}, {kind}",
                    rate,
                    "rows/s",
                    cores * floor,
                    f"{cores} cores x floor, 1 mult/row",
                )
    print("  (the registry runs the re-key on its worker processes, the first of each pair)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
