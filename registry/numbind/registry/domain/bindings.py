"""Bindings as a platform publishes, withdraws and reconciles them. Pure: no grpc, no SQL.

Validators raise InvalidArgument naming the field or item (`bindings[17].bound_at: got ...,
want ...`) and are written as tight loops with the detailed message built only on failure,
because a batch holds up to 10,000 items and PublishBindings is the registry's hottest path.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from numbind.protocol import voprf
from numbind.protocol.digest import MAX_BUCKET_BITS
from numbind.protocol.limits import (
    EARLIEST_US,
    FUTURE_SKEW_US,
    MAX_ACCOUNT_REF,
    MAX_BINDINGS,
    MAX_PAGE_SIZE,
    TOKEN_BYTES,
)
from numbind.registry.domain import validate
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.types import Binding, BindingKind, Token
from numbind.registry.errors import InvalidArgument, field_error

DEFAULT_PAGE_SIZE = 1_000
_KIND_VALUES = frozenset(int(k) for k in BindingKind)
_KIND_NAMES = ", ".join(k.name for k in BindingKind)


@dataclass(frozen=True)
class BindingKey:
    """Names one binding of the calling platform."""

    token: Token
    account_ref: bytes


@dataclass(frozen=True)
class PublishCounts:
    inserted: int
    updated: int
    unchanged: int
    # Republished as they were after the registry revoked them: left revoked.
    revoked: int = 0
    # Of the inserted and updated: bound before their number's last reissue, so the
    # previous holder's, and revoked on arrival (an order and a feed event each).
    revoked_on_arrival: int = 0


@dataclass(frozen=True)
class WithdrawCounts:
    withdrawn: int
    not_found: int


@dataclass(frozen=True)
class BucketDigest:
    bucket: int
    count: int
    digest: bytes


@dataclass(frozen=True)
class BindingPage:
    bindings: list[Binding]
    # Empty on the last page.
    next_page_token: str


@dataclass(frozen=True)
class RevokedPage:
    # (binding, revoked_us) each.
    bindings: list[tuple[Binding, int]]
    # Empty on the last page.
    next_page_token: str


@dataclass(frozen=True)
class PageCursor:
    """Where the next page starts: after (bucket16, pk), inside the 16-bit range [lo, hi]."""

    lo: int
    hi: int
    after_bucket: int
    after_pk: int


def _canonical(value: bytes) -> bool:
    try:
        voprf.deserialize_element(value)
    except voprf.DeserializeError:
        return False
    return True


def map_publish(
    bindings: Sequence[Binding], view: KeyView, now: int
) -> tuple[list[Binding], dict[bytes, bytes]]:
    """Every item valid, each binding at most once; else InvalidArgument naming the item.

    Returns the bindings with their tokens mapped to the store key, and each mapped
    token's old form while a re-key runs. A binding is the same whichever key its token
    came under, so duplicates are found after mapping.
    """
    validate.batch_size("bindings", len(bindings), MAX_BINDINGS)
    earliest, latest = EARLIEST_US, now + FUTURE_SKEW_US
    store_key = view.store_key_id
    direct = not view.rekeying
    out: list[Binding] = []
    old: dict[bytes, bytes] = {}
    seen: dict[tuple[bytes, bytes], int] = {}
    for i, b in enumerate(bindings):
        token = b.token
        value = token.value
        if direct and token.key_id == store_key and len(value) == TOKEN_BYTES and _canonical(value):
            mapped = b  # the common case: a token under the store key, nothing to map
        else:
            st = view.map(f"bindings[{i}].token", token.key_id, value)
            value = st.value
            if st.old is not None:
                old[value] = st.old
            mapped = Binding(Token(store_key, value), b.account_ref, b.bound_us, b.kind)
        if not 0 < len(b.account_ref) <= MAX_ACCOUNT_REF:
            raise _account_ref_error(f"bindings[{i}].account_ref", b.account_ref)
        if not earliest <= b.bound_us <= latest:
            # Likewise: outside the window, instant() raises unset / too early / future.
            validate.instant(f"bindings[{i}].bound_at", b.bound_us, now=now)
        if b.kind not in _KIND_VALUES:
            raise field_error(f"bindings[{i}].kind", int(b.kind), f"one of {_KIND_NAMES}")
        first = seen.setdefault((value, b.account_ref), i)
        if first != i:
            raise _duplicate_error(first, i)
        out.append(mapped)
    return out, old


def map_withdraw(keys: Sequence[BindingKey], view: KeyView) -> list[tuple[StoreToken, bytes]]:
    """Valid keys under live token keys, each binding at most once, mapped to the store key.

    A binding published under a key since retired is still withdrawable under the active
    key: the store re-keyed it when that key was rotated out."""
    validate.batch_size("bindings", len(keys), MAX_BINDINGS)
    out: list[tuple[StoreToken, bytes]] = []
    seen: dict[tuple[bytes, bytes], int] = {}
    for i, k in enumerate(keys):
        st = view.map(f"bindings[{i}].token", k.token.key_id, k.token.value)
        if not 0 < len(k.account_ref) <= MAX_ACCOUNT_REF:
            raise _account_ref_error(f"bindings[{i}].account_ref", k.account_ref)
        first = seen.setdefault((st.value, k.account_ref), i)
        if first != i:
            raise _duplicate_error(first, i)
        out.append((st, k.account_ref))
    return out


def bucket_bits(value: int) -> int:
    if not 0 <= value <= MAX_BUCKET_BITS:
        raise field_error("bucket_bits", value, f"0..{MAX_BUCKET_BITS}")
    return value


def bucket(value: int, bits: int) -> int:
    if not 0 <= value < 1 << bits:
        raise field_error("bucket", value, f"0..{(1 << bits) - 1} for bucket_bits {bits}")
    return value


def key_id_filter(value: str) -> str:
    """Optional key id: empty means the store key; otherwise well-formed (whether it is
    the store key is the key map's to say)."""
    if value and not validate.KEY_ID.fullmatch(value):
        raise field_error("key_id", repr(value[:40]), "empty, or 16 lowercase hex characters")
    return value


def page_size(value: int) -> int:
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 0 < value <= MAX_PAGE_SIZE:
        raise field_error("page_size", value, f"1..{MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}")
    return value


# Page tokens: version, 16-bit bucket range, last (bucket16, pk). Opaque to clients; the
# range is inside so a token replayed against another bucket is refused, not misread.
_CURSOR = struct.Struct(">BHHHQ")
_CURSOR_VERSION = 1


def encode_page_token(cursor: PageCursor) -> str:
    raw = _CURSOR.pack(_CURSOR_VERSION, cursor.lo, cursor.hi, cursor.after_bucket, cursor.after_pk)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, lo: int, hi: int) -> PageCursor | None:
    """The cursor in token (None for the first page), which must belong to bucket [lo, hi]."""
    if not token:
        return None
    want = "a next_page_token from a previous ListBindings response for this bucket"
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, t_lo, t_hi, after_bucket, after_pk = _CURSOR.unpack(raw)
    except (binascii.Error, ValueError, struct.error):
        raise field_error("page_token", repr(token[:40]), want) from None
    if version != _CURSOR_VERSION or (t_lo, t_hi) != (lo, hi) or not lo <= after_bucket <= hi:
        raise field_error("page_token", repr(token[:40]), want)
    return PageCursor(lo, hi, after_bucket, after_pk)


def _account_ref_error(field: str, ref: bytes) -> InvalidArgument:
    return field_error(field, f"{len(ref)} bytes", f"1..{MAX_ACCOUNT_REF} bytes")


def _duplicate_error(first: int, i: int) -> InvalidArgument:
    return field_error(
        f"bindings[{i}]",
        f"the same token and account_ref as bindings[{first}]",
        "each binding at most once per batch",
    )
