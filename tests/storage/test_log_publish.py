"""LogService.publish: a checkpoint for the current tree, read in one transaction when the
newest is current (witnesses and monitors ask on every round, hundreds of times during a
reissue), and signed and stored in one more when the tree grew."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import pytest
from numbind.protocol import note
from numbind.protocol.log_entries import canonical
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.errors import InvalidArgument
from numbind.registry.services.log import LogService
from numbind.registry.storage import log, migrate
from numbind.registry.storage.db import Database


def test_publish_reads_head_and_checkpoint_in_one_transaction(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db.write_engine)
        calls: list[bool] = []
        transact = db.transact

        def counted(fn: Any, *, write: bool = True) -> Any:
            calls.append(write)
            return transact(fn, write=write)

        db.transact = counted  # type: ignore[method-assign]
        service = LogService(db, note.Ed25519Signer.generate("log.test"))
        leaf = LogLeaf("order", "o-1", None, canonical({"t": "order", "id": "o-1"}))
        transact(lambda s: log.append(s, [leaf]))

        calls.clear()
        size, signed = service.publish()  # the tree grew: sign and store
        assert size == 1 and signed
        assert calls[0] is False and calls[1:2] == [True]
        calls.clear()
        assert service.publish() == (size, signed)  # current: one read, no write
        assert calls == [False]
    finally:
        db.close()


def _grow(db: Database, n: int = 1) -> None:
    leaves = [
        LogLeaf("order", f"o-{i}", None, canonical({"t": "order", "id": f"o-{i}"}))
        for i in range(n)
    ]
    db.transact(lambda s: log.append(s, leaves))


def _signed(db: Database) -> list[int]:
    """Sizes of the checkpoints stored, oldest first."""
    newest = db.transact(log.newest_checkpoint, write=False)
    top = newest[0] if newest is not None else -1
    return [
        n
        for n in range(top + 1)
        if db.transact(partial(log.checkpoint_at, size=n), write=False) is not None
    ]


def test_the_publish_loop_signs_only_when_no_checkpoint_came_for_an_interval(db: Database) -> None:
    """A burst of appends that witnesses follow gets the checkpoints their rounds sign on
    demand; the loop adds its own only when none came for `interval` while the log grew."""
    offset = [0.0]
    service = LogService(
        db, note.Ed25519Signer.generate("log.test"), clock=lambda: time.time() + offset[0]
    )
    interval = 600.0  # far beyond the test's own run time: no sleep decides anything
    assert service.publish_due(interval) == interval  # an empty log's first checkpoint
    assert _signed(db) == [0]
    _grow(db)
    service.publish()  # on demand (a witness's round): size 1, signed now
    _grow(db)
    wait = service.publish_due(interval)  # grown, but the newest is fresh: no signature
    assert 0 < wait <= interval
    assert _signed(db) == [0, 1]
    offset[0] = interval  # an interval later, the log still ahead of the newest
    assert service.publish_due(interval) == interval
    assert _signed(db) == [0, 1, 2]
    offset[0] = 3 * interval  # old, but current: nothing to sign
    assert service.publish_due(interval) == interval
    assert _signed(db) == [0, 1, 2]


def test_leaves_within_the_newest_checkpoint_sign_nothing(db: Database) -> None:
    """A witness reads the leaves of the checkpoint it just fetched while the log keeps
    growing: served under that checkpoint, no second one signed for the round."""
    service = LogService(db, note.Ed25519Signer.generate("log.test"))
    _grow(db, 3)
    size, _ = service.publish()
    assert size == 3
    _grow(db, 2)  # the burst goes on
    got = asyncio.run(service.leaves(0, 3))
    assert got == db.transact(lambda s: log.commitments(s, 0, 3), write=False)
    assert _signed(db) == [3]
    # Beyond the newest checkpoint: as before, one is signed for the current tree.
    assert len(asyncio.run(service.leaves(2, 5))) == 3
    assert _signed(db) == [3, 5]
    with pytest.raises(InvalidArgument):
        asyncio.run(service.leaves(0, 6))
