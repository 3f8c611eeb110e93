"""The verifiable log's read side: checkpoints, proofs, openings, cosignatures. No grpc.

Leaves are appended by the services whose changes they record (storage.log.append, in
their transactions). This service signs checkpoints (C2SP tlog-checkpoint, the log key's
name as origin): at least every `interval` seconds while the log grows (`run`), and on
demand (`checkpoint` signs one for the current size if the newest is behind). Signing is
coalesced where nothing asks for the current size: `run` signs only when no checkpoint
was signed (on demand) in the last `interval`, and `leaves` only when the range asked for
is beyond the newest checkpoint, so a burst of appends that witnesses follow yields about
one checkpoint per witness round, not several (each is a write through the store's one
writer). Witnesses
add cosignatures (C2SP tlog-cosignature) that the registry checks before it attaches
them: against the witness keys it was configured with, or a member's against the witness
key the federation manifest names for it (on first use only when the manifest names none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from numbind.protocol import note
from numbind.protocol.checkpoint import Checkpoint, CosignatureVerifier
from numbind.protocol.log_errors import LogError, TreeRangeError
from numbind.protocol.manifest import SignedManifest
from numbind.protocol.merkle import HASH_BYTES, Node, consistency_proof, inclusion_proof
from numbind.registry.domain.types import Principal, Role
from numbind.registry.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from numbind.registry.storage import log
from numbind.registry.storage.db import Database, Session

_log = logging.getLogger(__name__)

MAX_PROOFS = 1000
# Checkpoints signed between two prunings of the old ones (storage.log.prune_checkpoints).
_PRUNE_EVERY = 64
# `run` signs when the newest checkpoint is this close to `interval` old (a wake-up a hair
# early must not turn into a second wait of a few milliseconds).
_DUE_SLACK = 0.05
MAX_LEAVES = 10_000


@dataclass(frozen=True)
class LeafProof:
    index: int
    leaf: bytes
    hashes: list[bytes]
    # (salt, body) when the caller holds the entry.
    opening: tuple[bytes, bytes] | None


@dataclass(frozen=True)
class Alarm:
    origin: str
    failure: str
    message: str
    created_us: int


def may_open(caller: Principal, holder_pk: int | None) -> bool:
    """Openings go to whoever holds the entry; admins audit everything; key rotations
    (no holder) are public."""
    return holder_pk is None or holder_pk == caller.pk or caller.role == Role.ADMIN


class _Wanted:
    """Records the subtrees proofs ask for (answering placeholders)."""

    def __init__(self) -> None:
        self.nodes: set[Node] = set()

    def subtree_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        self.nodes.update(nodes)
        return [bytes(HASH_BYTES)] * len(nodes)


class _Known:
    def __init__(self, known: dict[Node, bytes]) -> None:
        self._known = known

    def subtree_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        return [self._known[n] for n in nodes]


class LogService:
    def __init__(
        self,
        db: Database,
        signer: note.Ed25519Signer,
        witnesses: Sequence[CosignatureVerifier] = (),
        manifest: Callable[[], SignedManifest | None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        # Wall clock, as the stored checkpoints' created_us (only `run` compares with it).
        self._clock = clock
        self._signer = signer
        self._witnesses = {(w.name, w.key_id): w for w in witnesses}
        # The federation manifest installed now (None: a federation of one).
        self.manifest = manifest
        self._published = 0

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def log_key(self) -> str:
        return self._signer.verifier.vkey()

    # -- checkpoints ----------------------------------------------------------------------
    def publish(self) -> tuple[int, bytes]:
        """The newest checkpoint, after signing one for the current tree if it is newer."""
        # One read transaction for both (each is a pool round trip and a session; witnesses
        # and monitors ask on every round, hundreds of times during a reissue).
        edge, latest = self._db.transact(
            lambda s: (log.head(s), log.latest_checkpoint(s)), write=False
        )
        if latest is not None and latest[0] >= edge.size:
            return latest
        text = Checkpoint(self.origin, edge.size, edge.root()).text()
        signed = note.sign_note(text, self._signer)
        stored = self._db.transact(lambda s: log.put_checkpoint(s, edge.size, signed))
        # Old checkpoints are pruned now and then (reading the kept window costs a scan).
        if self._published % _PRUNE_EVERY == 0:
            pruned = self._db.transact(log.prune_checkpoints)
            if pruned:
                _log.debug("log: pruned %d old checkpoints", pruned)
        self._published += 1
        return edge.size, stored

    async def checkpoint(self, min_cosignatures: int = 0) -> tuple[int, bytes]:
        """The newest checkpoint, or the newest with at least `min_cosignatures`."""
        if min_cosignatures == 0:
            return await asyncio.to_thread(self.publish)
        found = await self._db.run(lambda s: log.latest_cosigned(s, min_cosignatures), write=False)
        if found is None:
            raise FailedPrecondition(
                f"min_cosignatures: no recent checkpoint has {min_cosignatures} cosignatures yet"
            )
        return found

    def publish_due(self, interval: float) -> float:
        """Sign a checkpoint if the log grew and the newest is `interval` old (or there is
        none); return the seconds until the next one may be due. A checkpoint signed on
        demand meanwhile (a witness's round, a client's proof) resets the wait, so while
        witnesses keep asking the loop adds no signature of its own."""
        edge, newest = self._db.transact(
            lambda s: (log.head(s), log.newest_checkpoint(s)), write=False
        )
        if newest is not None and newest[0] >= edge.size:
            return interval  # current: nothing to sign until the log grows
        age = interval if newest is None else self._clock() - newest[1] / 1_000_000
        left = min(interval - age, interval)  # a clock behind the signer's: no longer
        if left > interval * _DUE_SLACK:
            return left
        self.publish()
        return interval

    async def run(self, stopping: asyncio.Event, interval: float) -> None:
        """Publish while the log grows, at least every `interval` seconds, until
        `stopping` (checkpoints signed on demand count: `publish_due`)."""
        while not stopping.is_set():
            wait = interval
            try:
                wait = await asyncio.to_thread(self.publish_due, interval)
            except Unavailable as exc:  # the store away: storage has logged why
                _log.warning("log: no checkpoint published (%s); trying again", exc)
            except Exception:  # anything else is a bug, but must not end publishing
                _log.exception("log: publishing a checkpoint failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)

    # -- proofs ---------------------------------------------------------------------------
    async def _size(self, requested: int) -> int:
        """The tree size a proof is for: the newest checkpoint's, or one the caller holds a
        checkpoint of (any size up to the tree's: every subtree below it is stored)."""
        if requested == 0:
            size, _ = await self.checkpoint()
            return size
        head = (await self._db.run(log.head, write=False)).size
        if requested > head:
            raise InvalidArgument(f"tree_size: got {requested}, want 0..{head}")
        return requested

    async def inclusion(
        self, caller: Principal, indices: Sequence[int], tree_size: int
    ) -> tuple[int, list[LeafProof]]:
        if not 1 <= len(indices) <= MAX_PROOFS:
            raise InvalidArgument(f"leaf_indices: got {len(indices)}, want 1..{MAX_PROOFS}")
        size = await self._size(tree_size)
        for i, idx in enumerate(indices):
            if not 0 <= idx < size:
                raise InvalidArgument(
                    f"leaf_indices[{i}]: got {idx}, want 0..{size - 1} (tree size {size})"
                )

        def read(session: Session) -> list[LeafProof]:
            # Every hash the batch's proofs need, in one pass over the store.
            wanted = _Wanted()
            for idx in indices:
                inclusion_proof(idx, size, wanted)
            nodes = sorted(wanted.nodes)
            known = dict(
                zip(nodes, log.StoredTree(session, size).subtree_hashes(nodes), strict=True)
            )
            tree = _Known(known)
            opened = {o.index: o for o in log.openings(session, indices)}
            return [
                LeafProof(
                    idx,
                    opened[idx].commitment,
                    inclusion_proof(idx, size, tree),
                    (
                        (opened[idx].salt, opened[idx].body)
                        if may_open(caller, opened[idx].holder_pk)
                        else None
                    ),
                )
                for idx in indices
            ]

        return size, await self._db.run(read, write=False)

    async def consistency(self, old_size: int, new_size: int) -> tuple[int, int, list[bytes]]:
        size = await self._size(new_size)
        if old_size > size:
            raise InvalidArgument(f"old_size: got {old_size}, want 0..{size}")

        def read(session: Session) -> list[bytes]:
            return consistency_proof(old_size, size, log.StoredTree(session, size))

        return old_size, size, await self._db.run(read, write=False)

    async def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaves within a signed checkpoint. A witness asks for those of the checkpoint
        it just fetched: the newest answers without signing another (the log has grown
        since, by the time the call arrives, all through a reissue)."""
        newest = await self._db.run(log.newest_checkpoint, write=False)
        size = newest[0] if newest is not None else 0
        if end > size:  # beyond it: as before, a checkpoint for the current tree
            size, _ = await self.checkpoint()
        if not 0 <= start <= end <= size:
            raise InvalidArgument(f"start, end: got [{start}, {end}), want within [0, {size}]")
        if end - start > MAX_LEAVES:
            raise InvalidArgument(f"end: at most {MAX_LEAVES} leaves per call")
        return await self._db.run(lambda s: log.commitments(s, start, end), write=False)

    async def find(
        self, *, order_id: str = "", revocation_id: str = ""
    ) -> list[tuple[int, str, str]]:
        """(index, kind, ref) of an order's leaves (creation and outcome) or a revocation's."""

        def read(session: Session) -> list[tuple[int, str, str]]:
            if revocation_id:
                return log.revocation_leaves(session, revocation_id)
            found = []
            for kind in ("order", "ack"):
                idx = log.find(session, kind, [order_id]).get(order_id)
                if idx is not None:
                    found.append((idx, kind, order_id))
            return found

        if not order_id and not revocation_id:
            raise InvalidArgument("about: want an order_id or a revocation_id")
        out = await self._db.run(read, write=False)
        if not out:
            raise NotFound(
                f"no leaf for {'order ' + order_id if order_id else 'revocation ' + revocation_id}"
            )
        return out

    # -- witnesses ------------------------------------------------------------------------
    def member_witness_name(self, member_id: str) -> str:
        """The witness name a member cosigns under: numbind.<federation>/witness/<id>
        (a member's own log's origin is `numbind.<federation>/log/<member>`)."""
        held = self.manifest()
        prefix = (
            f"numbind.{held.manifest.federation}" if held is not None else self.origin.split("/")[0]
        )
        return f"{prefix}/witness/{member_id}"

    async def add_cosignature(
        self, caller: Principal, tree_size: int, line: bytes, witness_key: str = ""
    ) -> bytes:
        """Attach a witness's cosignature after verifying it: a configured witness's, or a
        member's (role registry) under its own witness name, its key pinned the first time."""
        try:
            _, sigs = note.split_note(b"x\n\n" + line)
        except LogError as exc:
            raise InvalidArgument(f"signature_line: {exc.message}") from None
        if len(sigs) != 1:
            raise InvalidArgument("signature_line: want exactly one signature line")
        sig = sigs[0]
        witness = self._witnesses.get((sig.name, sig.key_id))
        offered, named = (
            (None, False) if witness is not None else self._member_key(caller, sig, witness_key)
        )
        if named:
            witness, offered = offered, None

        def act(session: Session) -> bytes:
            nonlocal witness
            if offered is not None:
                pinned = log.pin_witness(session, offered.name, offered.vkey(), caller.name)
                if pinned != offered.vkey():
                    raise PermissionDenied(
                        f"witness_key: {offered.name} is pinned to another key; a member's "
                        "witness key does not change"
                    )
                witness = offered
            assert witness is not None
            signed = log.checkpoint_at(session, tree_size)
            if signed is None:
                raise NotFound(f"tree_size: no checkpoint at size {tree_size}")
            text, _ = note.split_note(signed)
            try:
                witness.verify(text, sig.signature)
            except LogError as exc:
                raise InvalidArgument(f"signature_line: {exc.message}") from None
            merged = note.add_signatures(signed, [sig])
            log.replace_checkpoint(session, tree_size, merged)
            return merged

        return await self._db.run(act)

    def _member_key(
        self, caller: Principal, sig: note.Signature, witness_key: str
    ) -> tuple[CosignatureVerifier, bool]:
        """The member's witness key, and whether the manifest names it (else: pin it)."""
        name = sig.name[:80]
        if caller.role != Role.REGISTRY or not witness_key:
            raise PermissionDenied(
                f"signature_line: {name}+{sig.key_id:08x} is not a witness of this log"
            )
        try:
            offered = CosignatureVerifier.parse(witness_key)
        except LogError as exc:
            raise InvalidArgument(f"witness_key: {exc.message}") from None
        held = self.manifest()
        member = held.manifest.member(caller.name) if held is not None else None
        named = member.witness if member is not None else None
        if held is not None and named is not None:
            # The manifest names this member's witness key: that key only, never TOFU.
            if (sig.name, sig.key_id) != (named.name, named.key_id) or offered != named:
                raise PermissionDenied(
                    f"signature_line: member {caller.name} cosigns with the witness key "
                    f"manifest v{held.version} names, {named.name}+{named.key_id:08x}; got "
                    f"{name}+{sig.key_id:08x}"
                )
            return named, True
        want = self.member_witness_name(caller.name)
        if offered.name != want or (sig.name, sig.key_id) != (offered.name, offered.key_id):
            raise PermissionDenied(
                f"witness_key: member {caller.name} cosigns as {want} with the key it sends; "
                f"got {name}+{sig.key_id:08x}"
            )
        return offered, False

    async def alarms(self) -> list[Alarm]:
        rows = await self._db.run(log.alarms, write=False)
        return [Alarm(r.origin, r.failure, r.message, r.created_us) for r in rows]


__all__ = ["MAX_PROOFS", "Alarm", "LeafProof", "LogService", "TreeRangeError", "may_open"]
