"""Single-use attestation nonces, on SQLite and (when configured) PostgreSQL: a nonce is
claimed once, per carrier, for as long as its attestation could pass; two claims of one
nonce at once give it to exactly one."""

from __future__ import annotations

import threading

from numbind.registry.storage import nonces, principals
from numbind.registry.storage.db import Database, Session

T0 = 1_700_000_000_000_000


def _claim(db: Database, pk: int, nonce: bytes, *, until: int, now: int) -> bool:
    def tx(session: Session) -> bool:
        return nonces.claim(session, pk, nonce, keep_until_us=until, now_us=now)

    return db.transact(tx)


def _used(db: Database, pk: int, nonce: bytes, now: int) -> bool:
    return db.transact(lambda s: nonces.used(s, pk, nonce, now_us=now), write=False)


def test_a_nonce_is_claimed_once_per_carrier_while_it_is_kept(db: Database) -> None:
    cm = db.transact(lambda s: principals.register(s, "carrier", "cm")).pk
    cu = db.transact(lambda s: principals.register(s, "carrier", "cu")).pk
    n = b"\x01" * 32
    assert not _used(db, cm, n, T0)
    assert _claim(db, cm, n, until=T0 + 100, now=T0)
    assert _used(db, cm, n, T0 + 100) and not _used(db, cu, n, T0)
    assert not _claim(db, cm, n, until=T0 + 200, now=T0 + 50)
    assert _claim(db, cu, n, until=T0 + 100, now=T0)  # another carrier's nonce
    # Kept until its attestation could no longer pass; after that it is gone.
    assert not _used(db, cm, n, T0 + 101)
    assert _claim(db, cm, n, until=T0 + 300, now=T0 + 101)


def test_two_claims_of_one_nonce_at_once_give_it_to_one(db: Database) -> None:
    cm = db.transact(lambda s: principals.register(s, "carrier", "cm")).pk
    for i in range(5):
        n = bytes([i]) * 32
        start = threading.Barrier(4)
        got: list[bool] = []

        def claim(n: bytes = n, start: threading.Barrier = start, got: list[bool] = got) -> None:
            start.wait()
            got.append(_claim(db, cm, n, until=T0 + 100, now=T0))

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == [False, False, False, True]
