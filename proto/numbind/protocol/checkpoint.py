"""C2SP checkpoints (c2sp.org/tlog-checkpoint@v1.0.0), Ed25519 witness cosignatures
(c2sp.org/tlog-cosignature@v1.0.0) and the client's witness policy.

A checkpoint is the text of a signed note:

    <origin>\\n            non-empty; numbind's is "numbind.<federation-id>/log"
    <tree size>\\n         ASCII decimal, no leading zeroes ("0" for the empty tree)
    <root hash>\\n         standard base64 of the 32-byte RFC 9162 root
    [<extension line>\\n]  optional, non-empty, opaque (numbind writes none)

The log signs it with its Ed25519 note key (`numbind.protocol.note`, type 0x01), key name =
origin. A witness adds a cosignature: a note signature line whose key id is

    SHA-256(<witness name> || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4]

and whose signature bytes are a `timestamped_signature`: the u64 big-endian POSIX time of
cosigning (at most 2^63 - 1) followed by the 64-byte Ed25519 signature over

    "cosignature/v1\\n" || "time " || <timestamp, ASCII decimal> || "\\n" || <checkpoint text>

(the text including its final newline and any extension lines, no signature lines). A v1
cosignature states that, at that time, this was the largest consistent tree head the witness
had seen for the origin. Ed25519 cosignatures do not commit to the witness name, so one key
serves one witness.

`open_checkpoint` is what a client runs on the bytes it received: the log's signature, then
the strict body, then the policy ("all these witnesses", or "k of these n"). Unknown
signature lines are ignored; a known key's line that fails refuses the whole note.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
from numbind.protocol import note
from numbind.protocol.log_errors import (
    BadSignature,
    MalformedCheckpoint,
    MalformedKey,
    NoKnownSignature,
    QuorumNotMet,
)
from numbind.protocol.merkle import HASH_BYTES, MAX_TREE_SIZE

__all__ = [
    "ALG_COSIGNATURE_V1",
    "COSIGNATURE_HEADER",
    "MAX_TIMESTAMP",
    "Checkpoint",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "VerifiedCheckpoint",
    "WitnessPolicy",
    "cosigned_message",
    "open_checkpoint",
]

ALG_COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = b"cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
_SIGNATURE_BYTES = 8 + 64
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint body; the constructor refuses what the spec forbids."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or _CONTROL.search(self.origin):
            raise MalformedCheckpoint(
                f"checkpoint origin: got {self.origin[:80]!r}, want non-empty, no control chars"
            )
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpoint(f"checkpoint size: got {self.size}, want 0..2^64-1")
        if len(self.root_hash) != HASH_BYTES:
            raise MalformedCheckpoint(
                f"checkpoint root hash: got {len(self.root_hash)} bytes, want {HASH_BYTES}"
            )
        for i, ext in enumerate(self.extensions):
            if not ext or _CONTROL.search(ext):
                raise MalformedCheckpoint(
                    f"checkpoint extension line {i + 1}: want non-empty, no control chars"
                )

    def text(self) -> bytes:
        """The note text to sign: every line newline-terminated."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "".join(f"{line}\n" for line in [*lines, *self.extensions]).encode()

    @classmethod
    def parse(cls, text: bytes, origin: str | None = None) -> Checkpoint:
        """Parse a checkpoint body strictly; with `origin`, refuse any other origin."""
        if not text.endswith(b"\n"):
            raise MalformedCheckpoint("checkpoint: want a final newline")
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedCheckpoint(f"checkpoint: not UTF-8 at byte {exc.start}") from None
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedCheckpoint(
                f"checkpoint: got {len(lines)} lines, want origin, size and root hash"
            )
        origin_line, size_line, root_line, *extensions = lines
        if not _SIZE.fullmatch(size_line):
            raise MalformedCheckpoint(
                f"checkpoint size: got {size_line[:30]!r}, want decimal, no leading zeroes"
            )
        try:
            root = note.b64decode(root_line, "checkpoint root hash")
        except ValueError as exc:
            raise MalformedCheckpoint(str(exc)) from None
        checkpoint = cls(origin_line, int(size_line), root, tuple(extensions))
        if origin is not None and origin_line != origin:
            raise MalformedCheckpoint(
                f"checkpoint origin: got {origin_line[:80]!r}, want {origin!r}"
            )
        return checkpoint


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature/v1 signs (tlog-cosignature, "Ed25519 signed message")."""
    _check_timestamp(timestamp)
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


@dataclass(frozen=True)
class Cosignature:
    """One witness's cosignature: who, when (POSIX seconds), and the Ed25519 signature."""

    witness: str
    key_id: int
    timestamp: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp)
        if len(self.signature) != 64:
            raise BadSignature(
                f"cosignature by {self.witness}: signature of {len(self.signature)} bytes, want 64"
            )

    @classmethod
    def from_signature(cls, sig: note.Signature) -> Cosignature:
        """Read the timestamped_signature out of a note signature line."""
        if len(sig.signature) != _SIGNATURE_BYTES:
            raise BadSignature(
                f"cosignature by {sig.name}+{sig.key_id:08x}: got {len(sig.signature)} bytes, "
                f"want {_SIGNATURE_BYTES} (8-byte time, 64-byte signature)"
            )
        stamp = int.from_bytes(sig.signature[:8], "big")
        return cls(sig.name, sig.key_id, stamp, sig.signature[8:])

    def note_signature(self) -> note.Signature:
        """As a note signature line, for `note.add_signatures`."""
        stamp = self.timestamp.to_bytes(8, "big")
        return note.Signature(self.witness, self.key_id, stamp + self.signature)


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's Ed25519 cosignature/v1 key (signature type 0x04); a `note.Verifier`."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        note.check_key_name(self.name, "witness name")
        if len(self.public_key) != 32:
            raise MalformedKey(f"witness {self.name}: public key of {len(self.public_key)} bytes")
        kid = note.key_id(self.name, ALG_COSIGNATURE_V1, self.public_key)
        object.__setattr__(self, "key_id", kid)

    @classmethod
    def parse(cls, vkey: str) -> CosignatureVerifier:
        """A vkey of type 0x04: `name+hex(key id)+base64(0x04 || public key)`."""
        name, kid, alg, key = note.parse_verifier_key(vkey)
        if alg != ALG_COSIGNATURE_V1:
            raise MalformedKey(f"witness key {name}: type 0x{alg:02x}, want 0x04 (cosignature/v1)")
        verifier = cls(name, key)
        if kid != verifier.key_id:
            raise MalformedKey(f"witness key {name}: key id {kid:08x}, want {verifier.key_id:08x}")
        return verifier

    def vkey(self) -> str:
        return note.format_verifier_key(self.name, self.key_id, ALG_COSIGNATURE_V1, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> None:
        cosig = Cosignature.from_signature(note.Signature(self.name, self.key_id, signature))
        try:
            nacl.signing.VerifyKey(self.public_key).verify(
                cosigned_message(text, cosig.timestamp), cosig.signature
            )
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise BadSignature(
                f"cosignature by {self.name}+{self.key_id:08x} (time {cosig.timestamp}) "
                "does not verify over this checkpoint"
            ) from None


class CosignatureSigner:
    """A witness's signing key; a `note.Signer` whose signatures carry `clock()`'s time."""

    __slots__ = ("_clock", "_key", "key_id", "name")

    def __init__(self, name: str, seed: bytes, clock: Callable[[], float] = time.time) -> None:
        note.check_key_name(name, "witness name")
        if len(seed) != 32:
            raise MalformedKey(f"witness {name}: seed of {len(seed)} bytes, want 32")
        self.name = name
        self._key = nacl.signing.SigningKey(seed)
        self._clock = clock
        self.key_id = note.key_id(name, ALG_COSIGNATURE_V1, bytes(self._key.verify_key))

    @classmethod
    def generate(cls, name: str) -> CosignatureSigner:
        return cls(name, bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def parse(cls, skey: str, clock: Callable[[], float] = time.time) -> CosignatureSigner:
        """`PRIVATE+KEY+name+hex(id)+base64(alg || seed)`, alg 0x04, or 0x01 to reuse an
        Ed25519 note key as a cosigning key (as transparency-dev/formats allows); the key id
        must be the one for that alg."""
        name, kid, alg, seed = note.parse_signer_key(skey)
        if alg not in (note.ALG_ED25519, ALG_COSIGNATURE_V1) or len(seed) != 32:
            raise MalformedKey(f"witness key {name}: want an Ed25519 seed of type 0x04 or 0x01")
        signer = cls(name, seed, clock)
        want = note.key_id(name, alg, bytes(signer._key.verify_key))
        if kid != want:
            raise MalformedKey(f"witness key {name}: key id {kid:08x}, want {want:08x}")
        return signer

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, bytes(self._key.verify_key))

    def renamed(self, name: str) -> CosignatureSigner:
        """The same key under another witness name (and so another key id)."""
        return self if name == self.name else CosignatureSigner(name, bytes(self._key), self._clock)

    def skey(self) -> str:
        """The private key as text (type 0x04): store it as a secret."""
        return note.format_signer_key(self.name, self.key_id, ALG_COSIGNATURE_V1, bytes(self._key))

    def cosign(self, text: bytes, timestamp: int) -> Cosignature:
        """Cosign a checkpoint text at `timestamp`. Refuses a text that is not a checkpoint;
        checking that it is consistent with what this witness saw before is the caller's."""
        Checkpoint.parse(text)
        sig = self._key.sign(cosigned_message(text, timestamp)).signature
        return Cosignature(self.name, self.key_id, timestamp, sig)

    def sign(self, text: bytes) -> bytes:
        return self.cosign(text, int(self._clock())).note_signature().signature

    def __repr__(self) -> str:
        return f"CosignatureSigner({self.name}+{self.key_id:08x})"


@dataclass(frozen=True)
class WitnessPolicy:
    """Accept a checkpoint only with valid cosignatures from `quorum` of `witnesses`
    (c2sp.org/tlog-policy's "group k w1 .. wn"; quorum 0 is its "quorum none")."""

    witnesses: tuple[CosignatureVerifier, ...]
    quorum: int

    def __post_init__(self) -> None:
        if not 0 <= self.quorum <= len(self.witnesses):
            raise MalformedKey(
                f"witness policy quorum: got {self.quorum}, want 0..{len(self.witnesses)}"
            )
        names = [w.name for w in self.witnesses]
        keys = [w.public_key for w in self.witnesses]
        if len(set(names)) != len(names) or len(set(keys)) != len(keys):
            raise MalformedKey("witness policy: each witness once, each with its own key")

    @classmethod
    def all_of(cls, witnesses: Iterable[CosignatureVerifier]) -> WitnessPolicy:
        ws = tuple(witnesses)
        return cls(ws, len(ws))

    @classmethod
    def none(cls) -> WitnessPolicy:
        return cls((), 0)

    def check(
        self, opened: note.Note, *, now: int | None = None, clock_skew: int = 60
    ) -> tuple[Cosignature, ...]:
        """The policy's cosignatures among `opened`'s verified signatures, or QuorumNotMet.

        With `now`, a cosignature dated more than `clock_skew` seconds ahead does not count.
        """
        verified = {(s.name, s.key_id): s for s in opened.verified}
        counted: list[Cosignature] = []
        missing: dict[str, str] = {}
        for w in self.witnesses:
            sig = verified.get((w.name, w.key_id))
            if sig is None:
                missing[w.name] = "no cosignature"
                continue
            cosig = Cosignature.from_signature(sig)
            if now is not None and cosig.timestamp > now + clock_skew:
                missing[w.name] = f"dated {cosig.timestamp - now} s ahead"
                continue
            counted.append(cosig)
        if len(counted) < self.quorum:
            reasons = ", ".join(f"{name} ({why})" for name, why in missing.items())
            raise QuorumNotMet(
                f"checkpoint: {len(counted)} of {len(self.witnesses)} witnesses cosigned, "
                f"policy wants {self.quorum}; missing: {reasons}",
                tuple(missing),
            )
        return tuple(counted)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint that passed `open_checkpoint`: the exact signed text, what it says, and
    the cosignatures that satisfied the policy."""

    text: bytes
    checkpoint: Checkpoint
    cosignatures: tuple[Cosignature, ...]


def open_checkpoint(
    data: bytes,
    log: note.Verifier,
    policy: WitnessPolicy,
    *,
    origin: str | None = None,
    now: int | None = None,
) -> VerifiedCheckpoint:
    """Verify a received signed checkpoint: the log's signature, the body (origin = the
    log's key name unless `origin` is given), then the witness policy.

    Raises MalformedNote, BadSignature, NoKnownSignature (no valid signature by the log's
    key, e.g. a checkpoint signed with an unknown key), MalformedCheckpoint, QuorumNotMet.
    """
    opened = note.open_note(data, [log, *policy.witnesses])
    if not any(s.name == log.name and s.key_id == log.key_id for s in opened.verified):
        raise NoKnownSignature(
            f"checkpoint: no signature by the log key {log.name}+{log.key_id:08x}"
        )
    checkpoint = Checkpoint.parse(opened.text, origin if origin is not None else log.name)
    return VerifiedCheckpoint(opened.text, checkpoint, policy.check(opened, now=now))


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise BadSignature(f"cosignature time: got {timestamp}, want 0..2^63-1")
