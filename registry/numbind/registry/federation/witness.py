"""A registry witnessing one other registry's verifiable log (C2SP tlog-witness, in
numbind's terms); numbind.registry.federation.witnessing runs one per log the manifest
names.

On each round the witness fetches the newest checkpoint and checks it against the last one
it cosigned (numbind.protocol.log_audit): signed by the log's pinned key, not smaller, not
another root at the same size, consistent by the RFC 9162 proof; then it replays the new
leaves from its stored right edge and requires them to hash to the checkpoint's root (so it
has recomputed the tree, not taken the log's word). Only then does it cosign
(tlog-cosignature: "this is the largest consistent tree head I have seen") and hand the
cosignature to the log. On any failure it refuses, logs an ERROR naming the failure, and
keeps the evidence (both checkpoints and the failed proof) in `witness_alarms`, which
`numbind federation show` reports.

`LogSource` is the log as the witness sees it: `GrpcLogSource` over any channel to the
log owner's Log service (a peer channel), or a test double publishing a corrupted log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from numbind.protocol import note
from numbind.protocol.checkpoint import (
    Checkpoint,
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
)
from numbind.protocol.log_audit import LogFailure, check_extension, open_signed, replay
from numbind.protocol.log_errors import LogError
from numbind.protocol.merkle import CompactRange
from numbind.registry.storage import log as store
from numbind.registry.storage.db import Database, Session
from numbind.v1 import log_pb2, log_pb2_grpc

__all__ = ["GrpcLogSource", "LogSource", "Witness", "WitnessAlarm", "alarms_in"]

_log = logging.getLogger(__name__)
_LEAVES_PER_CALL = 10_000
# A witness holds the manifest in its own files (replication installs newer ones): asking
# as if it held the newest possible version keeps the manifest out of every round.
_NO_MANIFEST = log_pb2.GetCheckpointRequest(manifest_version=2**64 - 1)


class LogSource(Protocol):
    """The log being witnessed. Contract: answers what the log serves, unchecked."""

    async def checkpoint(self) -> bytes: ...

    async def log_key(self) -> str: ...

    async def consistency(self, old_size: int, new_size: int) -> list[bytes]: ...

    async def leaves(self, start: int, end: int) -> list[bytes]: ...

    async def add_cosignature(self, tree_size: int, line: bytes, witness_key: str) -> None: ...


class GrpcLogSource:
    def __init__(self, channel: grpc.aio.Channel, timeout: float = 30.0) -> None:
        self._stub = log_pb2_grpc.LogStub(channel)
        self._timeout = timeout

    async def checkpoint(self) -> bytes:
        resp = await self._stub.GetCheckpoint(_NO_MANIFEST, timeout=self._timeout)
        return bytes(resp.checkpoint)

    async def log_key(self) -> str:
        resp = await self._stub.GetCheckpoint(_NO_MANIFEST, timeout=self._timeout)
        return str(resp.log_key)

    async def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        resp = await self._stub.GetConsistencyProof(
            log_pb2.GetConsistencyProofRequest(old_size=old_size, new_size=new_size),
            timeout=self._timeout,
        )
        return [bytes(h) for h in resp.hashes]

    async def leaves(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        while start < end:
            stop = min(end, start + _LEAVES_PER_CALL)
            resp = await self._stub.GetLeaves(
                log_pb2.GetLeavesRequest(start=start, end=stop), timeout=self._timeout
            )
            out.extend(bytes(c) for c in resp.leaves)
            start = stop
        return out

    async def add_cosignature(self, tree_size: int, line: bytes, witness_key: str) -> None:
        await self._stub.AddCosignature(
            log_pb2.AddCosignatureRequest(
                tree_size=tree_size, signature_line=line, witness_key=witness_key
            ),
            timeout=self._timeout,
        )


@dataclass(frozen=True)
class WitnessAlarm:
    origin: str
    failure: str
    message: str
    created_us: int


class Witness:
    """Witnesses one log (its origin is the pinned log key's name) for this registry.

    `log_key` is the key the federation manifest names for the hub's log. Without it (a
    manifest from before it named one), the key is the one pinned in this store by an
    earlier round, or on the first round the key the log names (trust on first use)."""

    def __init__(
        self,
        db: Database,
        signer: CosignatureSigner,
        log_key: note.Ed25519Verifier | None = None,
        clock: Callable[[], float] = time.time,
        *,
        origin: str | None = None,
    ) -> None:
        self._db = db
        self._signer = signer
        self._pinned = log_key
        self._origin = log_key.name if log_key is not None else origin
        self._clock = clock
        # Why the log was unreachable at the last round (None: it answered), so an outage
        # is a warning once, not one a round (every second) for as long as it lasts.
        self._unreachable: str | None = None

    @property
    def origin(self) -> str:
        if self._origin is None:
            raise ValueError("witness: no log origin yet")
        return self._origin

    @property
    def _key(self) -> note.Ed25519Verifier:
        if self._pinned is None:
            raise ValueError("witness: no log key pinned yet")
        return self._pinned

    @property
    def verifier(self) -> CosignatureVerifier:
        return self._signer.verifier

    async def _pin(self, source: LogSource) -> None:
        if self._pinned is not None:
            return
        if self._origin is not None:
            row = await self._db.run(lambda s: store.witness_state(s, self.origin), write=False)
            if row is not None:
                self._pinned = note.Ed25519Verifier.parse(row.log_key)
                return
        self._pinned = note.Ed25519Verifier.parse(await source.log_key())
        self._origin = self._pinned.name
        _log.info("witness: pinned log key %s on first use", self._pinned.vkey())

    async def witness(self, source: LogSource) -> Cosignature:
        """One round: check the newest checkpoint, cosign it and hand the cosignature over,
        or raise LogFailure (after recording the alarm)."""
        await self._pin(source)
        signed = await source.checkpoint()
        state = await self._db.run(lambda s: store.witness_state(s, self.origin), write=False)
        old_note = state.note if state is not None else b""
        edge = store.witness_edge(state) if state is not None else CompactRange()
        proof: list[bytes] = []
        try:
            new = open_signed(signed, self._key)
            old = Checkpoint.parse(note.split_note(old_note)[0]) if old_note else None
            if old is not None and 0 < old.size < new.checkpoint.size:
                proof = await source.consistency(old.size, new.checkpoint.size)
            check_extension(old, new.checkpoint, proof)
            held = self._held(old, new.checkpoint, new.text, signed)
            if held is not None:
                return held  # nothing new: no write here, none at the log
            fresh = (
                await source.leaves(edge.size, new.checkpoint.size)
                if new.checkpoint.size > edge.size
                else []
            )
            # Off the event loop: a round after a reissue replays ~50,000 leaves (~100 ms of
            # hashing), which on the loop held up every call this registry was serving.
            grown = await asyncio.to_thread(replay, edge, fresh, new.checkpoint)
        except LogFailure as exc:
            await self._alarm(exc, old_note, signed, proof)
            raise
        cosig = self._signer.cosign(new.text, int(self._clock()))
        await self._db.run(
            lambda s: store.save_witness_state(s, self.origin, self._key.vkey(), grown, signed)
        )
        await source.add_cosignature(
            new.checkpoint.size, cosig.note_signature().line(), self.verifier.vkey()
        )
        return cosig

    def _held(
        self, old: Checkpoint | None, new: Checkpoint, text: bytes, signed: bytes
    ) -> Cosignature | None:
        """Our valid cosignature on `signed`, when it is the tree we cosigned last (then the
        round has nothing to do); else None."""
        if old is None or (old.size, old.root_hash) != (new.size, new.root_hash):
            return None
        mine = self.verifier
        for sig in note.split_note(signed)[1]:
            if (sig.name, sig.key_id) == (mine.name, mine.key_id):
                try:
                    mine.verify(text, sig.signature)
                    return Cosignature.from_signature(sig)
                except LogError:
                    return None
        return None

    async def round(self, source: LogSource) -> bool:
        """One round that never raises: True when it cosigned; a refusal is an alarm (see
        `witness`), an unreachable log a warning, to be retried next round."""
        try:
            await self.witness(source)
        except LogFailure:
            pass  # logged and kept as evidence by witness()
        except (grpc.RpcError, OSError) as exc:
            why = _unreachable_because(exc)
            if why != self._unreachable:
                _log.warning(
                    "witness: log %s unreachable (%s); retried every round", self._origin, why
                )
            self._unreachable = why
            return False
        except Exception:
            _log.exception("witness: round for log %s failed", self._origin)
        else:
            if self._unreachable is not None:
                _log.info("witness: log %s reachable again", self._origin)
            self._unreachable = None
            return True
        return False

    async def _alarm(
        self, exc: LogFailure, old_note: bytes, new_note: bytes, proof: list[bytes]
    ) -> None:
        _log.error("witness ALARM for log %s: %s", self.origin, exc.message)
        evidence = json.dumps({"consistency_proof": [h.hex() for h in proof]}).encode()

        def keep(session: Session) -> None:
            store.add_alarm(
                session, self.origin, exc.failure, exc.message, old_note, new_note, evidence
            )

        await self._db.run(keep)

    async def alarms(self) -> list[WitnessAlarm]:
        rows = await self._db.run(store.alarms, write=False)
        return [WitnessAlarm(r.origin, r.failure, r.message, r.created_us) for r in rows]


def alarms_in(database_url: str) -> list[dict[str, Any]]:
    """The witness alarms a registry's store holds, newest first, for `federation show`
    (empty for a store that has none, or no such table yet)."""
    if database_url.startswith("sqlite:///") and not Path(database_url[10:]).exists():
        return []
    db = Database(database_url)
    try:
        rows = db.transact(store.alarms, write=False)
        return [
            {"origin": r.origin, "failure": r.failure, "message": r.message, "at_us": r.created_us}
            for r in rows
        ]
    except Exception:  # a store before the log's migration has no alarms to show
        return []
    finally:
        db.close()


def _unreachable_because(exc: grpc.RpcError | OSError) -> str:
    """The status and gRPC's details, without the debug string an AioRpcError prints."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return str(exc)
