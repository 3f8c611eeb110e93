"""The witness against a log double (as akd's tests publish corrupted epochs): it cosigns
an honest log round after round, and refuses one whose served leaves do not hash to the
checkpoint it signed, keeping the evidence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from numbind.protocol import log_audit, note
from numbind.protocol.checkpoint import Checkpoint, CosignatureSigner
from numbind.protocol.log_audit import LogFailure
from numbind.protocol.merkle import MemoryTree, leaf_hash
from numbind.registry.federation.witness import Witness
from numbind.registry.storage import migrate
from numbind.registry.storage.db import Database

ORIGIN = "numbind.local/log"


class DoubleLog:
    """A log in memory; `serve_leaves` may differ from what the checkpoints commit to."""

    def __init__(self) -> None:
        self.key = note.Ed25519Signer.generate(ORIGIN)
        self.entries: list[bytes] = []
        self.serve_leaves: list[bytes] | None = None
        self.cosigned: list[tuple[int, bytes, str]] = []

    def tree(self) -> MemoryTree:
        return MemoryTree(leaf_hash(c) for c in self.entries)

    async def checkpoint(self) -> bytes:
        t = self.tree()
        return note.sign_note(Checkpoint(ORIGIN, t.size, t.root()).text(), self.key)

    async def log_key(self) -> str:
        return self.key.verifier.vkey()

    async def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return self.tree().consistency_proof(old_size, new_size)

    async def leaves(self, start: int, end: int) -> list[bytes]:
        return (self.serve_leaves or self.entries)[start:end]

    async def add_cosignature(self, tree_size: int, line: bytes, witness_key: str) -> None:
        self.cosigned.append((tree_size, line, witness_key))


async def test_the_witness_replays_and_refuses_leaves_that_are_not_the_tree(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    migrate.upgrade(db.write_engine)
    signer = CosignatureSigner.generate("numbind.local/witness/self")
    witness = Witness(db, signer)  # the log key is pinned on first use
    log = DoubleLog()
    try:
        for n in (3, 0, 5):
            log.entries += [b"leaf %d" % (len(log.entries) + i) for i in range(n)]
            cosig = await witness.witness(log)
            signed = note.add_signatures(await log.checkpoint(), [cosig.note_signature()])
            note.open_note(signed, [signer.verifier])  # a valid tlog-cosignature
        assert [size for size, _, _ in log.cosigned] == [3, 3, 8]
        log.entries.append(b"leaf 8")
        log.serve_leaves = [*log.entries[:8], b"not what the root commits to"]
        with pytest.raises(LogFailure) as exc:
            await witness.witness(log)
        assert exc.value.failure == "leaves"
        (alarm,) = await witness.alarms()
        assert alarm.failure == "leaves" and "replaying 1 leaves from size 8" in alarm.message
        assert len(log.cosigned) == 3  # nothing cosigned after the refusal
    finally:
        db.close()


class AttachingLog(DoubleLog):
    """A log that attaches the cosignatures it is handed, as a registry does."""

    def __init__(self) -> None:
        super().__init__()
        self.attached: dict[int, bytes] = {}

    async def checkpoint(self) -> bytes:
        signed = await super().checkpoint()
        size = self.tree().size
        if size in self.attached:
            _, (line,) = note.split_note(b"x\n\n" + self.attached[size])
            signed = note.add_signatures(signed, [line])
        return signed

    async def add_cosignature(self, tree_size: int, line: bytes, witness_key: str) -> None:
        await super().add_cosignature(tree_size, line, witness_key)
        self.attached[tree_size] = line


async def test_a_round_with_nothing_new_writes_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    migrate.upgrade(db.write_engine)
    signer = CosignatureSigner.generate("numbind.local/witness/self")
    witness = Witness(db, signer)
    log = AttachingLog()
    try:
        log.entries += [b"leaf 0", b"leaf 1"]
        first = await witness.witness(log)
        again = await witness.witness(log)  # our cosignature is on the newest: no call
        assert again == first and [size for size, _, _ in log.cosigned] == [2]
        log.entries.append(b"leaf 2")
        await witness.witness(log)
        assert [size for size, _, _ in log.cosigned] == [2, 3]
    finally:
        db.close()


async def test_the_replay_runs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A round after a reissue hashes ~50,000 leaves; on the event loop that held up every
    # call the witnessing registry was serving (holder queries at the hub, p99 past 20 ms).
    real = log_audit.replay
    on_loop: list[bool] = []

    def recording(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop in this thread: a worker's
            on_loop.append(False)
        return real(*args)

    monkeypatch.setattr("numbind.registry.federation.witness.replay", recording)
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    migrate.upgrade(db.write_engine)
    witness = Witness(db, CosignatureSigner.generate("numbind.local/witness/self"))
    log = DoubleLog()
    try:
        log.entries += [b"leaf %d" % i for i in range(5)]
        await witness.witness(log)
        assert on_loop == [False]
        assert [size for size, _, _ in log.cosigned] == [5]
    finally:
        db.close()
