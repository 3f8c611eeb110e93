"""Checking a log over time: what a witness and an auditor run on each new checkpoint.

Both keep the last checkpoint they accepted. Given a newer one they check, in order:

    unknown-key    it is not signed by the log's pinned key (or a known key's line fails)
    quorum         it lacks the witness cosignatures the policy asks for
    rollback       it is smaller than the one accepted before
    fork           same size, another root: two views of one history (a split view)
    rewrite        the consistency proof fails: a leaf of the old tree was rewritten or
                   dropped, so the old tree is not a prefix of the new one
    leaves         (a witness replaying leaves) the served leaves do not hash to the root

and raise `LogFailure` with `failure` set to that name and a message with the sizes and
roots, so the alarm says which of these it was. All pure: the caller fetches and persists.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

from numbind.protocol import note
from numbind.protocol.checkpoint import (
    Checkpoint,
    VerifiedCheckpoint,
    WitnessPolicy,
    open_checkpoint,
)
from numbind.protocol.log_errors import (
    BadSignature,
    ConsistencyProofError,
    LogError,
    MalformedCheckpoint,
    MalformedNote,
    NoKnownSignature,
    QuorumNotMet,
)
from numbind.protocol.merkle import CompactRange, verify_consistency

__all__ = [
    "FAILURES",
    "AuditState",
    "LogFailure",
    "check_extension",
    "open_signed",
    "replay",
]

FAILURES = ("unknown-key", "malformed", "quorum", "rollback", "fork", "rewrite", "leaves")


class LogFailure(LogError):
    """A checkpoint refused; `failure` is one of FAILURES."""

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(f"{failure}: {message}")
        self.failure = failure


def open_signed(
    data: bytes,
    log_key: note.Ed25519Verifier,
    policy: WitnessPolicy | None = None,
    *,
    now: int | None = None,
) -> VerifiedCheckpoint:
    """`open_checkpoint` with its refusals named as audit failures."""
    try:
        return open_checkpoint(data, log_key, policy or WitnessPolicy.none(), now=now)
    except (NoKnownSignature, BadSignature) as exc:
        raise LogFailure(
            "unknown-key",
            f"checkpoint not signed by the pinned log key {log_key.vkey()}: {exc.message}",
        ) from None
    except QuorumNotMet as exc:
        raise LogFailure("quorum", exc.message) from None
    except (MalformedNote, MalformedCheckpoint) as exc:
        raise LogFailure("malformed", exc.message) from None


def check_extension(old: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise LogFailure unless `new` extends `old` (None: nothing accepted yet)."""
    if old is None:
        return
    if new.size < old.size:
        raise LogFailure(
            "rollback",
            f"checkpoint of size {new.size} after one of size {old.size}: the log went back",
        )
    if new.size == old.size and new.root_hash != old.root_hash:
        raise LogFailure(
            "fork",
            f"two checkpoints of size {new.size} with different roots "
            f"{old.root_hash.hex()} and {new.root_hash.hex()}: a split view",
        )
    try:
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    except ConsistencyProofError as exc:
        raise LogFailure(
            "rewrite",
            f"the tree of size {old.size} is not a prefix of the tree of size {new.size} "
            f"(a leaf rewritten or dropped): {exc.message}",
        ) from None


def replay(edge: CompactRange, leaves: Sequence[bytes], new: Checkpoint) -> CompactRange:
    """The right edge after appending `leaves` (leaf data) to `edge`; LogFailure unless it
    is the tree `new` describes."""
    grown = CompactRange(edge.size, edge.hashes)
    grown.grow(leaves)
    if grown.size != new.size or grown.root() != new.root_hash:
        raise LogFailure(
            "leaves",
            f"replaying {len(leaves)} leaves from size {edge.size} gives size {grown.size} "
            f"root {grown.root().hex()}, the checkpoint says size {new.size} root "
            f"{new.root_hash.hex()}",
        )
    return grown


@dataclass(frozen=True)
class AuditState:
    """What an auditor keeps between runs: the pinned log key and the last checkpoint it
    verified (the exact signed bytes). JSON, so auditors can exchange them (gossip)."""

    log_key: str
    checkpoint: bytes

    def to_json(self) -> bytes:
        body = {"log_key": self.log_key, "checkpoint": base64.b64encode(self.checkpoint).decode()}
        return (json.dumps(body, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> AuditState:
        try:
            body = json.loads(data)
            return cls(str(body["log_key"]), base64.b64decode(body["checkpoint"], validate=True))
        except (ValueError, KeyError, TypeError):
            raise LogFailure("malformed", "audit state: not a numbind log audit state") from None

    def verified(self) -> VerifiedCheckpoint:
        """Re-open the stored checkpoint under the stored key (a state file edited by hand
        is refused, not trusted)."""
        try:
            key = note.Ed25519Verifier.parse(self.log_key)
        except LogError as exc:
            raise LogFailure("malformed", f"audit state log key: {exc.message}") from None
        return open_signed(self.checkpoint, key)
