"""C2SP signed notes (c2sp.org/signed-note@v1.0.0) with Ed25519 keys.

A note is a UTF-8 text ending in a newline, a blank line, and one or more signature lines
"— <key name> base64(key id || signature)\\n" (U+2014, a space). An Ed25519 signature is over
the text alone (final newline included) and its key id is

    SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]    (big-endian)

Keys travel as text: a verifier key ("vkey") is `name+hex(key id)+base64(0x01 || public key)`,
a signer key `PRIVATE+KEY+name+hex(key id)+base64(0x01 || 32-byte seed)`, as
golang.org/x/mod/sumdb/note writes them.

Sign bytes, not objects: `sign_note` returns the exact bytes to publish, and `open_note`
checks signatures over the bytes it received before anyone parses the text. Opening follows
the spec's rules: a signature line whose (name, key id) is unknown is ignored (even if one of
the two matches a known key); one from a known key that fails to verify refuses the whole
note (`BadSignature`); a note with no verified signature is refused (`NoKnownSignature`).

Other signature types plug in through the `Signer` / `Verifier` protocols: the witness
cosignatures of `numbind.protocol.checkpoint` are one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import nacl.exceptions
import nacl.signing
from numbind.protocol.log_errors import (
    BadSignature,
    MalformedKey,
    MalformedNote,
    NoKnownSignature,
)

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Ed25519Signer",
    "Ed25519Verifier",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "add_signatures",
    "b64decode",
    "check_key_name",
    "format_signer_key",
    "format_verifier_key",
    "key_id",
    "open_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "split_note",
]

ALG_ED25519 = 0x01
# The spec asks verifiers to accept at least 16 and to bound the count; Go's x/mod stops at 100.
MAX_SIGNATURES = 100
_SIG_PREFIX = "— ".encode()
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-f]{8}")


class Verifier(Protocol):
    """Checks one kind of signature by one key.

    Contract: `name` and `key_id` are the pair signature lines name this key by; `verify`
    MUST return None if `signature` (the bytes after the key id) is valid over `text` (the
    exact note text received) and raise `BadSignature` otherwise.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, text: bytes, signature: bytes) -> None: ...


class Signer(Protocol):
    """Makes one kind of signature with one key; `sign` returns the bytes after the key id."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, text: bytes) -> bytes: ...


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id, and the signature bytes after the key id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> bytes:
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return _SIG_PREFIX + f"{self.name} {base64.b64encode(raw).decode()}\n".encode()


@dataclass(frozen=True)
class Note:
    """An opened note: its exact text, the signatures verified, the ones from unknown keys."""

    text: bytes
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || alg || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def check_key_name(name: str, what: str = "key name") -> None:
    """Key names are non-empty and hold no Unicode space, plus sign or control character."""
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        raise MalformedKey(f"{what}: got {name[:80]!r}, want non-empty, no spaces, '+' or controls")


def b64decode(text: str, what: str) -> bytes:
    """Standard padded base64 (RFC 4648 section 4), canonical only: one string per value,
    so a changed character can never decode to the same bytes. Raises ValueError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not standard base64") from None
    if base64.b64encode(raw).decode() != text:
        raise ValueError(f"{what}: not canonical base64")
    return raw


def parse_verifier_key(vkey: str) -> tuple[str, int, int, bytes]:
    """Split `name+hex(id)+base64(alg || key)` into (name, key id, alg, key); no id check."""
    # maxsplit: standard base64 uses '+' too.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise MalformedKey("verifier key: want <name>+<hex id>+<base64 key>")
    return _key_parts(parts[0], parts[1], parts[2], "verifier key")


def parse_signer_key(skey: str) -> tuple[str, int, int, bytes]:
    """Split `PRIVATE+KEY+name+hex(id)+base64(alg || key)`; no id check."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise MalformedKey("signer key: want PRIVATE+KEY+<name>+<hex id>+<base64 key>")
    return _key_parts(parts[2], parts[3], parts[4], "signer key")


def format_verifier_key(name: str, kid: int, alg: int, public_key: bytes) -> str:
    return f"{name}+{kid:08x}+{base64.b64encode(bytes([alg]) + public_key).decode()}"


def format_signer_key(name: str, kid: int, alg: int, private_key: bytes) -> str:
    return f"PRIVATE+KEY+{name}+{kid:08x}+{base64.b64encode(bytes([alg]) + private_key).decode()}"


@dataclass(frozen=True)
class Ed25519Verifier:
    """An Ed25519 note verifier key (signature type 0x01)."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise MalformedKey(f"Ed25519 public key: got {len(self.public_key)} bytes, want 32")
        object.__setattr__(self, "key_id", key_id(self.name, ALG_ED25519, self.public_key))

    @classmethod
    def parse(cls, vkey: str) -> Ed25519Verifier:
        name, kid, alg, key = parse_verifier_key(vkey)
        if alg != ALG_ED25519:
            raise MalformedKey(f"verifier key {name}: type 0x{alg:02x}, want 0x01 (Ed25519)")
        verifier = cls(name, key)
        _check_id(name, kid, verifier.key_id)
        return verifier

    def vkey(self) -> str:
        return format_verifier_key(self.name, self.key_id, ALG_ED25519, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> None:
        try:
            nacl.signing.VerifyKey(self.public_key).verify(text, signature)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise BadSignature(
                f"signature by {self.name}+{self.key_id:08x} does not verify"
            ) from None


class Ed25519Signer:
    """An Ed25519 note signer key (type 0x01). The seed never appears in repr()."""

    __slots__ = ("_key", "key_id", "name")

    def __init__(self, name: str, seed: bytes) -> None:
        check_key_name(name)
        if len(seed) != 32:
            raise MalformedKey(f"Ed25519 seed: got {len(seed)} bytes, want 32")
        self.name = name
        self._key = nacl.signing.SigningKey(seed)
        self.key_id = key_id(name, ALG_ED25519, bytes(self._key.verify_key))

    @classmethod
    def generate(cls, name: str) -> Ed25519Signer:
        return cls(name, bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def parse(cls, skey: str) -> Ed25519Signer:
        name, kid, alg, seed = parse_signer_key(skey)
        if alg != ALG_ED25519:
            raise MalformedKey(f"signer key {name}: type 0x{alg:02x}, want 0x01 (Ed25519)")
        signer = cls(name, seed)
        _check_id(name, kid, signer.key_id)
        return signer

    @property
    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, bytes(self._key.verify_key))

    def renamed(self, name: str) -> Ed25519Signer:
        """The same key under another name (and so another key id)."""
        return self if name == self.name else Ed25519Signer(name, bytes(self._key))

    def skey(self) -> str:
        """The private key as text: store it as a secret."""
        return format_signer_key(self.name, self.key_id, ALG_ED25519, bytes(self._key))

    def sign(self, text: bytes) -> bytes:
        return self._key.sign(text).signature

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.name}+{self.key_id:08x})"


def sign_note(text: bytes, *signers: Signer) -> bytes:
    """The signed note, exactly as to publish: text, blank line, one line per signer."""
    _check_text(text)
    if not signers:
        raise MalformedNote("sign_note: want at least one signer")
    lines = []
    for signer in signers:
        check_key_name(signer.name, "signer name")
        lines.append(Signature(signer.name, signer.key_id, signer.sign(text)).line())
    return text + b"\n" + b"".join(lines)


def split_note(data: bytes) -> tuple[bytes, tuple[Signature, ...]]:
    """(text, signature lines) of a well-formed note; checks syntax only, no signature."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNote(f"note: not UTF-8 at byte {exc.start}") from None
    if bad := _CONTROL.search(decoded):
        raise MalformedNote(f"note: control character {bad.group()!r} at {bad.start()}")
    split = data.rfind(b"\n\n")
    if split < 0:
        raise MalformedNote("note: no blank line between the text and the signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block.endswith(b"\n"):
        raise MalformedNote("note: want signature lines ending in a newline after the blank line")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note: {len(lines)} signature lines, want at most {MAX_SIGNATURES}")
    return text, tuple(_parse_line(i, line) for i, line in enumerate(lines))


def open_note(data: bytes, verifiers: Iterable[Verifier]) -> Note:
    """Verify a received note against the keys the caller trusts; return what verified.

    Raises MalformedNote, BadSignature (a known key's signature fails: the whole note is
    refused), or NoKnownSignature (nothing verified under a known key).
    """
    known = _index(verifiers)
    text, signatures = split_note(data)
    verified: dict[tuple[str, int], Signature] = {}
    unverified: dict[bytes, Signature] = {}
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified.setdefault(sig.line(), sig)
            continue
        verifier.verify(text, sig.signature)
        verified.setdefault((sig.name, sig.key_id), sig)
    if not verified:
        seen = ", ".join(f"{s.name[:80]}+{s.key_id:08x}" for s in signatures)
        want = ", ".join(sorted(f"{n}+{k:08x}" for n, k in known)) or "none"
        raise NoKnownSignature(
            f"note: no signature from a known key; signed by {seen}; know {want}"
        )
    return Note(text, tuple(verified.values()), tuple(unverified.values()))


def add_signatures(data: bytes, signatures: Iterable[Signature]) -> bytes:
    """The note with more signature lines appended (a log attaching its witnesses'
    cosignatures). Lines for a (name, key id) the note already has are dropped; nothing is
    verified here, so open the result with `open_note` as any other note."""
    existing = split_note(data)[1]
    have = {(s.name, s.key_id) for s in existing}
    out = bytearray(data)
    for sig in signatures:
        check_key_name(sig.name, "signature name")
        if (sig.name, sig.key_id) not in have:
            have.add((sig.name, sig.key_id))
            out += sig.line()
    if len(have) > MAX_SIGNATURES:
        raise MalformedNote(f"note: {len(have)} signatures, want at most {MAX_SIGNATURES}")
    return bytes(out)


def _check_text(text: bytes) -> None:
    if not text.endswith(b"\n"):
        raise MalformedNote("note text: want a final newline")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNote(f"note text: not UTF-8 at byte {exc.start}") from None
    if bad := _CONTROL.search(decoded):
        raise MalformedNote(f"note text: control character {bad.group()!r} at {bad.start()}")


def _parse_line(i: int, line: bytes) -> Signature:
    where = f"note: signature line {i + 1}"
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNote(f"{where}: want '— <name> <base64>'")
    name, sep, b64 = line[len(_SIG_PREFIX) :].decode().partition(" ")
    try:
        check_key_name(name, "signature name")
    except MalformedKey as exc:
        raise MalformedNote(f"{where}: {exc.message}") from None
    try:
        raw = b64decode(b64, "signature")
    except ValueError as exc:
        raise MalformedNote(f"{where}: {exc}") from None
    if not sep or len(raw) < 5:
        raise MalformedNote(f"{where}: want a key id and a signature, got {len(raw)} bytes")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _key_parts(name: str, hex_id: str, b64: str, what: str) -> tuple[str, int, int, bytes]:
    check_key_name(name, f"{what} name")
    if not _HEX8.fullmatch(hex_id):
        raise MalformedKey(f"{what} {name}: key id {hex_id[:20]!r}, want 8 lowercase hex digits")
    try:
        raw = b64decode(b64, f"{what} {name}")
    except ValueError as exc:
        raise MalformedKey(str(exc)) from None
    if len(raw) < 2:
        raise MalformedKey(f"{what} {name}: want a type byte and key material")
    return name, int(hex_id, 16), raw[0], raw[1:]


def _check_id(name: str, got: int, want: int) -> None:
    if got != want:
        raise MalformedKey(f"key {name}: key id {got:08x} does not match the key, want {want:08x}")


def _index(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known:
            raise MalformedKey(f"verifiers: two keys named {v.name}+{v.key_id:08x}")
        known[(v.name, v.key_id)] = v
    return known
