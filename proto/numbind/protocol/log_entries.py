"""What the registry's verifiable log commits to: entries, their canonical bytes, openings.

Each leaf of the log (RFC 9162 leaf data) is a 32-byte salted commitment

    commitment = SHA-256(salt || canonical bytes)        salt: 16 random bytes

so the log itself reveals nothing: not a token, not who reported what. The *opening*
(index, salt, canonical bytes) goes only to whoever holds the entry: the carrier that
reported a lifecycle event or triggered a revocation, the platform that got an order and
acked it. Key rotations are public. An opening is checked against the leaf it claims by
recomputing the commitment (`Opening.check`); an inclusion proof then ties the leaf to a
signed checkpoint.

Canonical bytes are JSON with sorted keys, no spaces, ASCII only: one entry, one encoding,
readable by any language. Every entry has `"v": 1` and `"t"`, its type:

    lifecycle   an applied or superseded lifecycle event: carrier, token (hex, store key),
                key_id, kind, effective_us, applied, tenure_start_us after it, and the
                revocation it triggered (or null)
    revocation  a trigger (reissue, deactivation notice or holder request): id, cause,
                carrier, the number of its orders and SHA-256 over their sorted ids
    order       one order: id, revocation, platform, kind, cause, token, key_id,
                tenure_start_us
    ack         an order's outcome: order, platform, state, outcome
    key         a token-key rotation: key_id, public key (hex), the key it replaced

No entry carries an account_ref or a holder's subject, even inside its opening.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from numbind.protocol.log_errors import LogError

__all__ = [
    "ENTRY_TYPES",
    "SALT_BYTES",
    "EntryError",
    "Opening",
    "canonical",
    "commitment",
    "orders_digest",
]

SALT_BYTES = 16
ENTRY_TYPES = ("lifecycle", "revocation", "order", "ack", "key")


class EntryError(LogError):
    """An opening that does not open its leaf, or bytes that are not a log entry."""


# json.dumps with these options, built once: dumps builds an encoder per call, a third of
# the cost of a small entry, and a reissue encodes one per order and one per ack.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
# And the C encoder under it, which JSONEncoder.encode still builds on every call (a
# quarter of what is left for an ack entry): the same function with the same options, so
# the same bytes. No circular-reference bookkeeping (markers None): an entry is a few
# scalars, never a structure that contains itself. Without the C accelerator, encode().
_MAKE_C: Callable[..., Callable[[object, int], Sequence[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_C_ENCODE = (
    None
    if _MAKE_C is None
    else _MAKE_C(  # markers, default, encoder, indent, separators, sort, skip, allow_nan
        None,
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        True,
        False,
        True,
    )
)


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The one encoding of an entry that its commitment is over."""
    if entry.get("t") not in ENTRY_TYPES:
        raise EntryError(f"log entry type: got {entry.get('t')!r}, want one of {ENTRY_TYPES}")
    body = {"v": 1, **entry}
    if _C_ENCODE is None:
        return _CANONICAL.encode(body).encode()
    return "".join(_C_ENCODE(body, 0)).encode()


def commitment(salt: bytes, body: bytes) -> bytes:
    """The leaf data: SHA-256(salt || canonical bytes)."""
    if len(salt) != SALT_BYTES:
        raise EntryError(f"salt: got {len(salt)} bytes, want {SALT_BYTES}")
    return hashlib.sha256(salt + body).digest()


def orders_digest(order_ids: Iterable[str]) -> str:
    """What a revocation entry commits to about its orders: SHA-256 over the sorted ids,
    each followed by a newline, in hex. A monitor with the orders' openings (or a carrier
    with GetRevocation's order ids) recomputes it."""
    h = hashlib.sha256()
    for oid in sorted(order_ids):
        h.update(oid.encode() + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class Opening:
    """The opening of leaf `index`: its salt and canonical bytes."""

    index: int
    salt: bytes
    body: bytes

    @property
    def commitment(self) -> bytes:
        return commitment(self.salt, self.body)

    def check(self, leaf: bytes) -> None:
        """Raise EntryError unless this opening opens `leaf` (the 32-byte commitment)."""
        if self.commitment != leaf:
            raise EntryError(
                f"opening of leaf {self.index}: SHA-256(salt || bytes) is "
                f"{self.commitment.hex()[:16]}..., the leaf is {leaf.hex()[:16]}..."
            )

    def entry(self) -> dict[str, Any]:
        """The entry, parsed; refuses bytes that are not canonical."""
        try:
            value = json.loads(self.body)
        except ValueError:
            raise EntryError(f"opening of leaf {self.index}: not JSON") from None
        if not isinstance(value, dict) or canonical(value) != self.body:
            raise EntryError(f"opening of leaf {self.index}: not a canonical log entry")
        return value
