"""Hypothesis strategies of bad requests, one per RPC that takes input: the registry state
they are drawn against (Env) and the bad and good values they are built from. The requests
themselves are in _bad_carrier_requests (Tokens, Carriers, Holders), _bad_platform_requests
(Platforms) and _bad_admin_requests (Admin).

Every drawn request carries at least one defect the wire contract refuses (named, so a
failure says which); the rest of the message is drawn around it, valid or not. A request
with no defect could be legal and write, so none is ever drawn: the database must be the
same after all of them. Each strategy yields (defect name, request message).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import nacl.signing
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st
from numbind.v1 import common_pb2

Drawn = tuple[str, Message]
DAY = 86_400
US = 1_000_000


@dataclass
class Env:
    """What the registry under test holds, so requests can be bad in exactly one way."""

    key_id: str  # the active token key
    tokens: list[bytes]  # valid tokens (numbers the carrier serves, bound at the platform)
    carrier_id: str
    other_carrier_id: str
    platform_id: str
    signing_key: nacl.signing.SigningKey
    order_ids: list[str]
    revocation_id: str
    csr_pem: str
    feed_head: int

    @property
    def now(self) -> int:
        """Seconds, read at each draw: attestations and times stay fresh however long the
        run takes, so a defect is never masked by plain expiry."""
        return int(time.time())


# ---- values ---------------------------------------------------------------------------------

printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def long_text(chars: str, lo: int, hi: int) -> st.SearchStrategy[str]:
    """Long strings, cheaply (drawing hundreds of characters one by one is slow)."""
    return st.tuples(st.sampled_from(list(chars)), st.integers(lo, hi)).map(lambda t: t[0] * t[1])


bad_request_ids = st.one_of(
    st.sampled_from(["", " ", "a b", "ключ", "\x00", "line\nbreak", "x" * 129, "é" * 10]),
    long_text("xé\x7f ", 129, 400),
    st.text(max_size=12).filter(lambda s: not _REQUEST_ID.fullmatch(s)),
)
request_ids = st.one_of(printable, bad_request_ids)
huge_ints = st.sampled_from([2**31 - 1, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1])
bad_enum = st.sampled_from([-(2**31), -1, 99, 2**31 - 1])
hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)


def timestamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def bad_times(env: Env) -> st.SearchStrategy[tuple[str, Timestamp]]:
    return st.sampled_from(
        [
            ("time unset", Timestamp()),
            ("time before 1990", timestamp(600_000_000)),
            ("time negative", timestamp(-(2**40))),
            ("time in the future", timestamp(env.now + DAY)),
            ("time far future", timestamp(2**62)),
            ("time max int64", timestamp(2**63 - 1)),
        ]
    )


def good_times(env: Env) -> st.SearchStrategy[Timestamp]:
    return st.integers(2 * DAY, 300 * DAY).map(lambda ago: timestamp(env.now - ago))


def key_ids(env: Env) -> st.SearchStrategy[str]:
    return st.one_of(st.just(env.key_id), hex16, printable, st.just(""))


def bad_key_ids(env: Env) -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.sampled_from([("key_id empty", ""), ("key_id uppercase", env.key_id.upper())]),
        hex16.filter(lambda k: k != env.key_id).map(lambda k: ("key_id unknown", k)),
        printable.filter(lambda k: len(k) != 16).map(lambda k: ("key_id malformed", k)),
        st.sampled_from([*env.order_ids, env.revocation_id, env.platform_id]).map(
            lambda k: ("key_id of another kind", k)
        ),
    )


def bad_token_values() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(
        st.sampled_from(
            [
                ("token empty", b""),
                ("token non-canonical", b"\xff" * 32),
                ("token negative encoding", b"\x01" + b"\x00" * 31),
                ("token 33 bytes", b"\x02" * 33),
            ]
        ),
        st.binary(min_size=1, max_size=64)
        .filter(lambda b: len(b) != 32)
        .map(lambda b: ("token wrong length", b)),
    )


def bad_tokens(env: Env) -> st.SearchStrategy[tuple[str, common_pb2.Token]]:
    return st.one_of(
        bad_key_ids(env).map(lambda d: (d[0], common_pb2.Token(key_id=d[1], value=env.tokens[0]))),
        bad_token_values().map(lambda d: (d[0], common_pb2.Token(key_id=env.key_id, value=d[1]))),
    )


def good_tokens(env: Env) -> st.SearchStrategy[common_pb2.Token]:
    return st.sampled_from(env.tokens).map(lambda v: common_pb2.Token(key_id=env.key_id, value=v))


def bad_account_refs() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(
        st.just(("account_ref empty", b"")),
        st.binary(min_size=65, max_size=200).map(lambda b: ("account_ref too long", b)),
    )


_OVERSIZE: dict[tuple[str, int], Any] = {}
M = TypeVar("M", bound=Message)


def oversize(template: M, field: str, limit: int) -> M:
    """`template` with `field` holding limit + 1 items; built once per message type (a
    10,001-item batch costs more to build than a hundred small requests)."""
    cache = (type(template).__name__, limit)
    if cache not in _OVERSIZE:
        msg = type(template)()
        msg.CopyFrom(template)
        items = list(getattr(msg, field))
        getattr(msg, field).extend(
            (items * (limit // max(1, len(items)) + 2))[: limit + 1 - len(items)]
        )
        _OVERSIZE[cache] = msg
    return cast(M, _OVERSIZE[cache])


def kinds(common: list[str], rare: list[str]) -> st.SearchStrategy[str]:
    """Defect kinds, the rare (costly) ones drawn about once in 40."""
    return st.sampled_from(common * (40 // max(1, len(common))) + rare)


@st.composite
def one_of_defects(draw: st.DrawFn, defects: list[Callable[[st.DrawFn], str]]) -> str:
    return draw(st.sampled_from(defects))(draw)
