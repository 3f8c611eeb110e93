"""Checking the registry's verifiable log from a client: checkpoints, proofs, audits.

    log = LogClient(channel, pin=bundle.directory / "log.vkey")
    proved = await log.prove([leaf_index])      # raises LogProofError unless it verifies
    state = await log.audit(previous_state)     # rollback, fork, rewrite -> LogProofError

The log's key is pinned. For the log a federation manifest names (the hub's), the key is
the manifest's (`federation`, a bundle's federation.vkey and manifest.note: see
numbind.sdk.log_trust); otherwise it is given (`log_key`), or the pin file's, or on first
use the key the registry names, written to the pin file (trust on first use, as ssh does;
an operator can write the pin file from the registry's DATA_DIR/log beforehand). A
checkpoint must verify under that key and carry the cosignatures the `trust` policy asks
for (default: every member of the manifest that declared a witness key; for a log the
manifest does not name, or a federation of one, none). Cosignatures arrive every few
seconds, so a checkpoint short of one is asked for again for up to `quorum_wait` seconds
before the refusal ("quorum", naming the missing witnesses) reaches the caller. Every
refusal is `LogProofError` with `.failure` naming it (numbind.protocol.log_audit's names,
plus "inclusion", "opening" and "manifest").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, Unpack

import grpc
from numbind.protocol import note
from numbind.protocol.checkpoint import VerifiedCheckpoint, WitnessPolicy
from numbind.protocol.files import write_atomically
from numbind.protocol.log_audit import AuditState, LogFailure, check_extension, open_signed
from numbind.protocol.log_entries import EntryError, Opening
from numbind.protocol.log_errors import LogError
from numbind.protocol.manifest import FederationError
from numbind.protocol.merkle import leaf_hash, verify_inclusion
from numbind.sdk.errors import NumbindClientError, Place, ProofError, Refused
from numbind.sdk.log_trust import FederationTrust, LogTrust
from numbind.sdk.retry import RetryPolicy, attempt_timeout, call_with_retry
from numbind.v1 import log_pb2, log_pb2_grpc

__all__ = ["LOG_KEY_FILE", "Checkpointed", "LogClient", "LogProofError", "ProvedLeaf"]

LOG_KEY_FILE = "log.vkey"
_BATCH = 1000
_KINDS = {v: k.removeprefix("LEAF_KIND_").lower() for k, v in log_pb2.LeafKind.items()}


class LogProofError(ProofError):
    """The log did not prove what was asked; `failure` says how, `detail` what happened."""

    def __init__(self, failure: str, message: str, **place: Unpack[Place]) -> None:
        super().__init__(f"log {failure}: {message}", **place)
        self.failure = failure
        self.detail = message

    def _remade(self, reason: str | None, **place: Unpack[Place]) -> Self:
        # ``reason``, if given, replaces the detail: the message still names the failure.
        return type(self)(self.failure, self.detail if reason is None else reason, **place)


@dataclass(frozen=True)
class Checkpointed:
    """A checkpoint that verified: the exact bytes received and what they say."""

    signed: bytes
    verified: VerifiedCheckpoint
    log_key: str

    @property
    def size(self) -> int:
        return self.verified.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.verified.checkpoint.root_hash

    def state(self) -> AuditState:
        return AuditState(self.log_key, self.signed)


@dataclass(frozen=True)
class ProvedLeaf:
    """A leaf proved included in `checkpoint`; `entry` is its opening, if the caller holds it."""

    index: int
    leaf: bytes
    checkpoint: Checkpointed
    entry: dict[str, Any] | None
    hashes: tuple[bytes, ...]
    salt: bytes | None = None
    body: bytes | None = None

    def proof_json(self) -> dict[str, Any]:
        """Everything a third party needs to re-check it offline."""
        return {
            "leaf_index": self.index,
            "leaf": self.leaf.hex(),
            "tree_size": self.checkpoint.size,
            "inclusion_proof": [h.hex() for h in self.hashes],
            "checkpoint": self.checkpoint.signed.decode(),
            "log_key": self.checkpoint.log_key,
            "opening": (
                {"salt": self.salt.hex(), "body": self.body.decode()}
                if self.salt is not None and self.body is not None
                else None
            ),
        }


class LogClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        pin: Path | None = None,
        log_key: str | None = None,
        trust: WitnessPolicy | None = None,
        retry: RetryPolicy | None = None,
        federation: FederationTrust | None = None,
        quorum_wait: float = 20.0,
        rpc_timeout: float | None = None,
    ) -> None:
        self._stub = log_pb2_grpc.LogStub(channel)
        self._pin = pin
        # The pin file is read here, once: later it is only written (trust on first use).
        if log_key is None and pin is not None and pin.exists():
            log_key = pin.read_text(encoding="ascii").strip() or None
        self._key = log_key
        # None: the default (the manifest's witnesses for its log, else none).
        self._trust = trust
        self._retry = retry or RetryPolicy()
        self._timeout = rpc_timeout
        self.federation = federation
        self.quorum_wait = quorum_wait
        # The last checkpoint verified, with the manifest version it was held to: proofs of
        # leaves it covers need no new fetch until the manifest (so the policy) changes.
        self._last: tuple[int, Checkpointed] | None = None

    @classmethod
    def for_bundle(cls, channel: grpc.aio.Channel, directory: Path, **options: Any) -> LogClient:
        """A client pinning what the bundle in `directory` holds: the log key file, and in
        a federation the federation key and manifest."""
        try:
            federation = FederationTrust.from_bundle(directory)
        except FederationError as exc:
            raise LogProofError("manifest", f"bundle {directory}: {exc.message}") from None
        return cls(channel, pin=directory / LOG_KEY_FILE, federation=federation, **options)

    @property
    def trust(self) -> WitnessPolicy:
        """The policy the next checkpoint is held to (before the registry's answer)."""
        if self._trust is not None:
            return self._trust
        held = self.federation.held if self.federation is not None else None
        if held is None or self.federation is None:
            return WitnessPolicy.none()
        # The log this client has met (its key, pinned or named) decides whose policy;
        # before the first answer, the hub's.
        known = self._key
        named = self.federation.trust_for(known) if known else None
        if named is not None:
            return named.policy
        if held.manifest.log is not None:
            return held.manifest.witness_policy()
        return WitnessPolicy.none()

    async def _call(self, method: Any, request: Any) -> Any:
        timeout = attempt_timeout(60, self._timeout)
        return await call_with_retry(lambda: method(request, timeout=timeout), self._retry)

    def _pinned(self, offered: str) -> str:
        if self._key is None:
            self._key = offered
            if self._pin is not None:
                write_atomically(self._pin, (offered + "\n").encode("ascii"), 0o600)
        return self._key

    # -- checkpoints and proofs ---------------------------------------------------------
    async def checkpoint(self) -> Checkpointed:
        """The newest checkpoint that verifies under the pinned key and satisfies the
        policy; one short of a cosignature is asked for again until `quorum_wait` ends."""
        deadline = time.monotonic() + self.quorum_wait
        while True:
            try:
                cp = await self._checkpoint()
                self._last = (self._manifest_version(), cp)
                return cp
            except LogProofError as exc:
                left = deadline - time.monotonic()
                if exc.failure != "quorum" or left <= 0:
                    raise
                await asyncio.sleep(min(0.5, left))

    async def _checkpoint(self) -> Checkpointed:
        policy = self.trust
        try:
            resp = await self._call(
                self._stub.GetCheckpoint,
                log_pb2.GetCheckpointRequest(
                    min_cosignatures=policy.quorum, manifest_version=self._manifest_version()
                ),
            )
        except Refused as exc:  # no checkpoint is witnessed enough (yet)
            wanted = ", ".join(w.name for w in policy.witnesses)
            raise LogProofError("quorum", f"{exc.message}; the policy wants {wanted}") from None
        trust = self._trust_for(bytes(resp.manifest), resp.log_key)
        vkey = trust.log_key or self._pinned(resp.log_key)
        self._key = vkey
        try:
            key = note.Ed25519Verifier.parse(vkey)
            verified = open_signed(bytes(resp.checkpoint), key, trust.policy)
        except LogFailure as exc:
            raise LogProofError(exc.failure, exc.message) from None
        except LogError as exc:
            raise LogProofError("unknown-key", f"pinned log key: {exc.message}") from None
        return Checkpointed(bytes(resp.checkpoint), verified, vkey)

    async def _covering(self, size: int) -> Checkpointed:
        """A verified checkpoint of at least `size` leaves: the newest one with the
        cosignatures the policy wants may predate fresh leaves until the witnesses' next
        round, so it is asked for again until `quorum_wait` ends."""
        if self._last is not None:
            version, held = self._last
            if version == self._manifest_version() and held.size >= size:
                return held
        deadline = time.monotonic() + self.quorum_wait
        while True:
            cp = await self.checkpoint()
            left = deadline - time.monotonic()
            if cp.size >= size:
                return cp
            await self._within_log(size, cp.log_key)
            if left <= 0:
                raise LogProofError(
                    "quorum",
                    f"no checkpoint with the cosignatures the policy wants covers leaf "
                    f"{size - 1} yet (the newest is of size {cp.size})"
                    f"{await self._lacking(cp.log_key)}",
                )
            await asyncio.sleep(min(0.5, left))

    async def _within_log(self, size: int, vkey: str) -> None:
        """Refuses at once, as `missing`, a leaf past the end of the log: a checkpoint
        asked for without cosignatures is signed on demand over every leaf, so no witness
        round can bring one that covers it (waiting `quorum_wait` only to blame the quorum
        sent the user looking for a witness)."""
        resp = await self._call(
            self._stub.GetCheckpoint,
            log_pb2.GetCheckpointRequest(manifest_version=self._manifest_version()),
        )
        try:
            key = note.Ed25519Verifier.parse(vkey)
            newest = open_signed(bytes(resp.checkpoint), key, WitnessPolicy.none())
        except (LogFailure, LogError):
            return  # judged where it is held to the policy: nothing to add here
        if newest.checkpoint.size < size:
            raise LogProofError(
                "missing",
                f"leaf {size - 1} is past the end of the log, which holds "
                f"{_leaves(newest.checkpoint.size)}",
            )

    async def _lacking(self, vkey: str) -> str:
        """Whose cosignature the newest checkpoint lacks (for the refusal), else ""."""
        try:
            resp = await self._call(
                self._stub.GetCheckpoint,
                log_pb2.GetCheckpointRequest(manifest_version=self._manifest_version()),
            )
            key = note.Ed25519Verifier.parse(vkey)
            open_signed(bytes(resp.checkpoint), key, self._trust_for(b"", vkey).policy)
        except LogFailure as exc:
            return f"; the newest checkpoint: {exc.message}" if exc.failure == "quorum" else ""
        except (LogError, NumbindClientError, grpc.RpcError):
            return ""  # only an explanation: the refusal stands without it
        return ""

    def policy_for(self, checkpoint: Checkpointed) -> WitnessPolicy:
        """The policy `checkpoint` was held to (the manifest's, for the log it names)."""
        return self._trust_for(b"", checkpoint.log_key).policy

    def _manifest_version(self) -> int:
        held = self.federation.held if self.federation is not None else None
        return held.version if held is not None else 0

    def _trust_for(self, manifest: bytes, offered_key: str) -> LogTrust:
        named = None
        if self.federation is not None:
            try:
                self.federation.offer(manifest)
            except FederationError as exc:
                raise LogProofError("manifest", f"the registry's manifest: {exc.message}") from None
            named = self.federation.trust_for(offered_key)
        if named is None:
            return LogTrust(None, self._trust or WitnessPolicy.none(), False)
        return LogTrust(named.log_key, self._trust or named.policy, True)

    async def prove(
        self, indices: Sequence[int], *, checkpoint: Checkpointed | None = None
    ) -> list[ProvedLeaf]:
        """Inclusion of each leaf in one verified checkpoint, openings checked."""
        if not indices:
            return []
        cp = checkpoint or await self._covering(max(indices) + 1)
        out: list[ProvedLeaf] = []
        for i in range(0, len(indices), _BATCH):
            chunk = list(indices[i : i + _BATCH])
            resp = await self._call(
                self._stub.GetInclusionProof,
                log_pb2.GetInclusionProofRequest(leaf_indices=chunk, tree_size=cp.size),
            )
            if resp.tree_size != cp.size or len(resp.proofs) != len(chunk):
                raise LogProofError("inclusion", "the registry answered for another tree")
            for want, p in zip(chunk, resp.proofs, strict=True):
                out.append(self._check(want, p, cp))
        return out

    def _check(self, want: int, p: Any, cp: Checkpointed) -> ProvedLeaf:
        leaf, hashes = bytes(p.leaf), tuple(bytes(h) for h in p.hashes)
        if p.leaf_index != want:
            raise LogProofError("inclusion", f"asked for leaf {want}, got {p.leaf_index}")
        try:
            verify_inclusion(leaf_hash(leaf), want, cp.size, hashes, cp.root)
        except LogError as exc:
            raise LogProofError("inclusion", exc.message) from None
        if not p.HasField("opening"):
            return ProvedLeaf(want, leaf, cp, None, hashes)
        opening = Opening(want, bytes(p.opening.salt), bytes(p.opening.body))
        try:
            opening.check(leaf)
            entry = opening.entry()
        except EntryError as exc:
            raise LogProofError("opening", exc.message) from None
        return ProvedLeaf(want, leaf, cp, entry, hashes, opening.salt, opening.body)

    async def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        resp = await self._call(
            self._stub.GetConsistencyProof,
            log_pb2.GetConsistencyProofRequest(old_size=old_size, new_size=new_size),
        )
        return [bytes(h) for h in resp.hashes]

    async def leaves(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        while start < end:
            stop = min(end, start + 10_000)
            resp = await self._call(
                self._stub.GetLeaves, log_pb2.GetLeavesRequest(start=start, end=stop)
            )
            out.extend(bytes(c) for c in resp.leaves)
            start = stop
        return out

    async def find(
        self, *, order_id: str = "", revocation_id: str = ""
    ) -> list[tuple[int, str, str]]:
        request = (
            log_pb2.FindLeavesRequest(order_id=order_id)
            if order_id
            else log_pb2.FindLeavesRequest(revocation_id=revocation_id)
        )
        resp = await self._call(self._stub.FindLeaves, request)
        return [(r.leaf_index, _KINDS.get(r.kind, "?"), r.ref) for r in resp.leaves]

    # -- audits ---------------------------------------------------------------------------
    async def audit(
        self, previous: AuditState | None, *, compare: Sequence[AuditState] = ()
    ) -> Checkpointed:
        """The newest checkpoint, checked to extend `previous` (this auditor's last) and each
        of `compare` (other auditors' states: a split view shows up there)."""
        old = None
        if previous is not None:
            old = self._reopen(previous)
            self._key = previous.log_key
        new = await self.checkpoint()
        for seen in ([old] if old else []) + [self._reopen(s) for s in compare]:
            before = seen.checkpoint
            proof = (
                await self.consistency(before.size, new.size) if 0 < before.size < new.size else []
            )
            try:
                check_extension(before, new.verified.checkpoint, proof)
            except LogFailure as exc:
                raise LogProofError(exc.failure, exc.message) from None
        return new

    def _reopen(self, state: AuditState) -> VerifiedCheckpoint:
        if self._key is not None and state.log_key != self._key:
            raise LogProofError(
                "unknown-key", f"a state signed under {state.log_key}, not {self._key}"
            )
        try:
            return state.verified()
        except LogFailure as exc:
            raise LogProofError(exc.failure, exc.message) from None


def _leaves(n: int) -> str:
    if n <= 1:
        return "1 leaf (index 0)" if n else "no leaf yet"
    return f"{n:,} leaves (indices 0 to {n - 1:,})"
