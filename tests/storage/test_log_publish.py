"""LogService.publish: a checkpoint for the current tree, read in one transaction when the
newest is current (witnesses and monitors ask on every round, hundreds of times during a
reissue), and signed and stored in one more when the tree grew."""

from __future__ import annotations

from typing import Any

from numbind.protocol import note
from numbind.protocol.log_entries import canonical
from numbind.registry.domain.logged import LogLeaf
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
