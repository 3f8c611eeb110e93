"""Hypothesis strategies of bad requests, one per RPC that takes input.

Every drawn request carries at least one defect the wire contract refuses (named, so a
failure says which); the rest of the message is drawn around it, valid or not. A request
with no defect could be legal and write, so none is ever drawn: the database must be the
same after all of them. Each strategy yields (defect name, request message).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import nacl.signing
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st
from numbind.protocol import attestation
from numbind.protocol.digest import MAX_BUCKET_BITS
from numbind.protocol.limits import (
    MAX_ACKS,
    MAX_BINDINGS,
    MAX_EVALUATE,
    MAX_HOLDER_NUMBERS,
    MAX_HOLDER_PLATFORMS,
    MAX_LIFECYCLE_EVENTS,
    MAX_PAGE_SIZE,
    MAX_REASON,
    MAX_REASSIGNED_QUERIES,
)
from numbind.v1 import admin_pb2, carriers_pb2, common_pb2, holders_pb2, platforms_pb2, tokens_pb2

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


def _long(chars: str, lo: int, hi: int) -> st.SearchStrategy[str]:
    """Long strings, cheaply (drawing hundreds of characters one by one is slow)."""
    return st.tuples(st.sampled_from(list(chars)), st.integers(lo, hi)).map(lambda t: t[0] * t[1])


bad_request_ids = st.one_of(
    st.sampled_from(["", " ", "a b", "ключ", "\x00", "line\nbreak", "x" * 129, "é" * 10]),
    _long("xé\x7f ", 129, 400),
    st.text(max_size=12).filter(lambda s: not _REQUEST_ID.fullmatch(s)),
)
request_ids = st.one_of(printable, bad_request_ids)
huge_ints = st.sampled_from([2**31 - 1, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1])
bad_enum = st.sampled_from([-(2**31), -1, 99, 2**31 - 1])
hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def bad_times(env: Env) -> st.SearchStrategy[tuple[str, Timestamp]]:
    return st.sampled_from(
        [
            ("time unset", Timestamp()),
            ("time before 1990", _ts(600_000_000)),
            ("time negative", _ts(-(2**40))),
            ("time in the future", _ts(env.now + DAY)),
            ("time far future", _ts(2**62)),
            ("time max int64", _ts(2**63 - 1)),
        ]
    )


def good_times(env: Env) -> st.SearchStrategy[Timestamp]:
    return st.integers(2 * DAY, 300 * DAY).map(lambda ago: _ts(env.now - ago))


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
def _one_of_defects(draw: st.DrawFn, defects: list[Callable[[st.DrawFn], str]]) -> str:
    return draw(st.sampled_from(defects))(draw)


# ---- Tokens -------------------------------------------------------------------------------------


def evaluate(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = tokens_pb2.EvaluateRequest(
            key_id=env.key_id,
            blinded_elements=draw(st.lists(st.sampled_from(env.tokens), min_size=1, max_size=4)),
        )
        kind = draw(kinds(["key", "empty", "element", "identity"], ["oversize"]))
        if kind == "key":  # "" is the active key: not a defect
            name, req.key_id = draw(bad_key_ids(env).filter(lambda d: d[1] != ""))
        elif kind == "empty":
            name = "no elements"
            del req.blinded_elements[:]
        elif kind == "oversize":
            name = f"{MAX_EVALUATE + 1} elements"
            req = oversize(req, "blinded_elements", MAX_EVALUATE)
        elif kind == "identity":
            name = "identity element"
            req.blinded_elements[draw(st.integers(0, len(req.blinded_elements) - 1))] = bytes(32)
        else:
            name, value = draw(bad_token_values().filter(lambda d: d[1] != b""))
            req.blinded_elements[draw(st.integers(0, len(req.blinded_elements) - 1))] = value
        return "Evaluate: " + name, req

    return build()


# ---- Carriers ---------------------------------------------------------------------------------


def report_lifecycle(env: Env) -> st.SearchStrategy[Drawn]:
    event = st.builds(
        carriers_pb2.LifecycleEvent,
        token=good_tokens(env),
        kind=st.integers(1, 5),
        effective_at=good_times(env),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = carriers_pb2.ReportLifecycleRequest(
            request_id=draw(printable), events=draw(st.lists(event, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.events) - 1))
        kind = draw(kinds(["rid", "empty", "token", "kind", "time"], ["oversize"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no events"
            del req.events[:]
        elif kind == "oversize":
            name = f"{MAX_LIFECYCLE_EVENTS + 1} events"
            req = oversize(req, "events", MAX_LIFECYCLE_EVENTS)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.events[at].token.CopyFrom(token)
        elif kind == "kind":
            name = "lifecycle kind out of range"
            req.events[at].kind = draw(st.one_of(st.just(0), st.integers(6, 1000), bad_enum))  # type: ignore[assignment]
        else:
            name, ts = draw(bad_times(env))
            req.events[at].effective_at.CopyFrom(ts)
        return "ReportLifecycle: " + name, req

    return build()


# ---- Holders ------------------------------------------------------------------------------------


def _signed(
    env: Env,
    *,
    token: bytes | None = None,
    key_id: str | None = None,
    carrier_id: str | None = None,
    purpose: int = attestation.Purpose.QUERY,
    issued: int | None = None,
    lifetime: int = 120,
    nonce: bytes | None = None,
) -> holders_pb2.SignedAttestation:
    issued_us = (env.now if issued is None else issued) * US

    def ts(us: int) -> Timestamp:
        return _ts(us // US, (us % US) * 1000)

    # Built and signed here, not by attestation.sign: that refuses the malformed ones.
    att = holders_pb2.HolderAttestation(
        carrier_id=env.carrier_id if carrier_id is None else carrier_id,
        token=env.tokens[0] if token is None else token,
        key_id=env.key_id if key_id is None else key_id,
        subject="fuzz-subscriber",
        tenure_start=ts((env.now - 400 * DAY) * US),
        purpose=purpose,  # type: ignore[arg-type]
        nonce=os.urandom(16) if nonce is None else nonce,
        issued_at=ts(issued_us),
        expires_at=ts(issued_us + lifetime * US),
    )
    data = att.SerializeToString(deterministic=True)
    signature = env.signing_key.sign(attestation.SIGNING_CONTEXT + data).signature
    return holders_pb2.SignedAttestation(attestation=data, signature=signature)


def bad_attestations(env: Env, purpose: int) -> st.SearchStrategy[tuple[str, Any]]:
    wrong = (
        attestation.Purpose.REVOKE
        if purpose == attestation.Purpose.QUERY
        else attestation.Purpose.QUERY
    )

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, holders_pb2.SignedAttestation]:
        kind = draw(
            st.sampled_from(
                [
                    "garbage",
                    "signature",
                    "expired",
                    "not yet valid",
                    "too long-lived",
                    "wrong purpose",
                    "other carrier",
                    "malformed token",
                    "bogus key_id",
                    "empty",
                ]
            )
        )
        if kind == "garbage":
            blob = draw(st.binary(max_size=300))
            return "attestation garbage", holders_pb2.SignedAttestation(
                attestation=blob, signature=draw(st.binary(max_size=80))
            )
        if kind == "empty":
            return "attestation empty", holders_pb2.SignedAttestation()
        if kind == "signature":
            good = _signed(env, purpose=purpose)
            sig = bytearray(good.signature)
            sig[draw(st.integers(0, len(sig) - 1))] ^= 1 << draw(st.integers(0, 7))
            good.signature = bytes(sig)
            return "attestation bad signature", good
        if kind == "expired":
            return "attestation expired", _signed(env, purpose=purpose, issued=env.now - 3600)
        if kind == "not yet valid":
            return "attestation not yet valid", _signed(env, purpose=purpose, issued=env.now + 3600)
        if kind == "too long-lived":
            return "attestation lifetime too long", _signed(env, purpose=purpose, lifetime=7200)
        if kind == "wrong purpose":
            return "attestation wrong purpose", _signed(env, purpose=wrong)
        if kind == "other carrier":
            return "attestation of another carrier", _signed(
                env, purpose=purpose, carrier_id=env.other_carrier_id
            )
        if kind == "malformed token":
            _, value = draw(bad_token_values())
            return "attestation malformed token", _signed(env, purpose=purpose, token=value)
        name, key_id = draw(bad_key_ids(env))
        return "attestation " + name, _signed(env, purpose=purpose, key_id=key_id)

    return build()


def query_bindings(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        kind = draw(kinds(["att", "att", "att", "empty"], ["oversize"]))
        if kind == "empty":
            return "QueryBindings: no attestations", holders_pb2.QueryBindingsRequest()
        if kind == "oversize":
            atts = [_signed(env) for _ in range(MAX_HOLDER_NUMBERS + 1)]
            return f"QueryBindings: {len(atts)} attestations", holders_pb2.QueryBindingsRequest(
                attestations=atts
            )
        name, bad = draw(bad_attestations(env, attestation.Purpose.QUERY))
        # Valid attestations beside the bad one: none may be consumed (validate first).
        good = [_signed(env) for _ in range(draw(st.integers(0, 2)))]
        atts = [*good, bad] if draw(st.booleans()) else [bad, *good]
        return "QueryBindings: " + name, holders_pb2.QueryBindingsRequest(attestations=atts)

    return build()


def request_revocation(env: Env) -> st.SearchStrategy[Drawn]:
    revoke = attestation.Purpose.REVOKE

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = holders_pb2.RequestRevocationRequest(
            request_id=draw(printable),
            attestation=_signed(env, purpose=revoke),
            scope=holders_pb2.REVOCATION_SCOPE_ALL_PRE_TENURE,
        )
        kind = draw(st.sampled_from(["rid", "scope", "platforms", "att", "att"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "scope":
            name = "scope out of range"
            req.scope = draw(st.one_of(st.just(0), st.integers(4, 100), bad_enum))  # type: ignore[assignment]
        elif kind == "platforms":
            req.scope = holders_pb2.REVOCATION_SCOPE_PLATFORMS
            sub = draw(st.sampled_from(["empty", "oversize", "malformed"]))
            if sub == "empty":
                name = "PLATFORMS scope without platforms"
            elif sub == "oversize":
                name = f"{MAX_HOLDER_PLATFORMS + 1} platforms"
                req.platform_ids.extend([env.platform_id] * (MAX_HOLDER_PLATFORMS + 1))
            else:
                name = "malformed platform id"
                req.platform_ids.extend(
                    [draw(st.sampled_from(["", "UPPER", "-x", "a b", "x" * 64, "<b>"]))]
                )
        else:
            name, bad = draw(bad_attestations(env, revoke))
            req.attestation.CopyFrom(bad)
        return "RequestRevocation: " + name, req

    return build()


def get_revocation(env: Env) -> st.SearchStrategy[Drawn]:
    ids = st.one_of(
        st.just(""),
        printable.filter(lambda s: s != env.revocation_id),
        st.text(max_size=300).filter(lambda s: s != env.revocation_id),
        st.sampled_from([*env.order_ids, env.key_id, env.platform_id]),
    )
    return ids.map(
        lambda r: (
            "GetRevocation: unknown or malformed id",
            holders_pb2.GetRevocationRequest(revocation_id=r),
        )
    )


# ---- Platforms -----------------------------------------------------------------------------


def publish_bindings(env: Env) -> st.SearchStrategy[Drawn]:
    binding = st.builds(
        common_pb2.Binding,
        token=good_tokens(env),
        account_ref=st.binary(min_size=1, max_size=64),
        bound_at=good_times(env),
        kind=st.integers(1, 5),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.PublishBindingsRequest(
            request_id=draw(printable), bindings=draw(st.lists(binding, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.bindings) - 1))
        kind = draw(kinds(["rid", "empty", "token", "ref", "time", "kind"], ["oversize"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no bindings"
            del req.bindings[:]
        elif kind == "oversize":
            name = f"{MAX_BINDINGS + 1} bindings"
            req = oversize(req, "bindings", MAX_BINDINGS)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.bindings[at].token.CopyFrom(token)
        elif kind == "ref":
            name, req.bindings[at].account_ref = draw(bad_account_refs())
        elif kind == "time":
            name, ts = draw(bad_times(env))
            req.bindings[at].bound_at.CopyFrom(ts)
        else:
            name = "binding kind out of range"
            req.bindings[at].kind = draw(st.one_of(st.just(0), st.integers(6, 1000), bad_enum))  # type: ignore[assignment]
        return "PublishBindings: " + name, req

    return build()


def withdraw_bindings(env: Env) -> st.SearchStrategy[Drawn]:
    key = st.builds(
        common_pb2.BindingKey,
        token=good_tokens(env),
        account_ref=st.binary(min_size=1, max_size=64),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.WithdrawBindingsRequest(
            request_id=draw(printable), bindings=draw(st.lists(key, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.bindings) - 1))
        kind = draw(kinds(["rid", "empty", "token", "ref"], ["oversize"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no bindings"
            del req.bindings[:]
        elif kind == "oversize":
            name = f"{MAX_BINDINGS + 1} keys"
            req = oversize(req, "bindings", MAX_BINDINGS)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.bindings[at].token.CopyFrom(token)
        else:
            name, req.bindings[at].account_ref = draw(bad_account_refs())
        return "WithdrawBindings: " + name, req

    return build()


def get_digest(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.GetDigestRequest(
            bucket_bits=draw(st.integers(0, MAX_BUCKET_BITS)), key_id=env.key_id
        )
        if draw(st.booleans()):
            name = "bucket_bits out of range"
            req.bucket_bits = draw(st.one_of(st.integers(MAX_BUCKET_BITS + 1, 2**32 - 1)))
        else:
            name, req.key_id = draw(bad_key_ids(env).filter(lambda d: d[1] != ""))
        return "GetDigest: " + name, req

    return build()


def list_bindings(env: Env, rpc: str) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        bits = draw(st.integers(0, MAX_BUCKET_BITS))
        req = platforms_pb2.ListBindingsRequest(
            bucket_bits=bits,
            bucket=draw(st.integers(0, (1 << bits) - 1)),
            key_id=env.key_id,
            page_size=draw(st.integers(0, MAX_PAGE_SIZE)),
        )
        kind = draw(st.sampled_from(["bits", "bucket", "size", "token", "key"]))
        if kind == "bits":
            name = "bucket_bits out of range"
            req.bucket_bits = draw(st.integers(MAX_BUCKET_BITS + 1, 2**32 - 1))
        elif kind == "bucket":
            name = "bucket out of range"
            req.bucket = draw(st.integers(1 << bits, 2**32 - 1))
        elif kind == "size":
            name = "page_size out of range"
            req.page_size = draw(st.integers(MAX_PAGE_SIZE + 1, 2**32 - 1))
        elif kind == "token":
            name = "page_token forged"
            req.page_token = draw(
                st.one_of(
                    st.text(min_size=1, max_size=20),
                    st.sampled_from(["A", "v1:", "%%%"]),
                    _long("A/+=", 21, 300),
                )
            )
        else:
            name, req.key_id = draw(bad_key_ids(env).filter(lambda d: d[1] != ""))
        return f"{rpc}: {name}", req

    return build()


def check_reassigned(env: Env) -> st.SearchStrategy[Drawn]:
    query = st.builds(platforms_pb2.ReassignedQuery, token=good_tokens(env), since=good_times(env))

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.CheckReassignedRequest(
            queries=draw(st.lists(query, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.queries) - 1))
        kind = draw(kinds(["empty", "token", "time"], ["oversize"]))
        if kind == "empty":
            name = "no queries"
            del req.queries[:]
        elif kind == "oversize":
            name = f"{MAX_REASSIGNED_QUERIES + 1} queries"
            req = oversize(req, "queries", MAX_REASSIGNED_QUERIES)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.queries[at].token.CopyFrom(token)
        else:
            name, ts = draw(bad_times(env).filter(lambda d: d[0] != "time before 1990"))
            req.queries[at].since.CopyFrom(ts)
        return "CheckReassigned: " + name, req

    return build()


def stream_events(env: Env) -> st.SearchStrategy[Drawn]:
    return st.one_of(
        st.integers(2**63, 2**64 - 1).map(
            lambda s: ("after_seq >= 2^63", platforms_pb2.StreamEventsRequest(after_seq=s))
        ),
        st.integers(env.feed_head + 1, 2**63 - 1).map(
            lambda s: ("after_seq beyond the head", platforms_pb2.StreamEventsRequest(after_seq=s))
        ),
        st.integers(3601, 2**32 - 1).map(
            lambda h: (
                "heartbeat_seconds out of range",
                platforms_pb2.StreamEventsRequest(heartbeat_seconds=h),
            )
        ),
    ).map(lambda d: ("StreamEvents: " + d[0], d[1]))


def ack_events(env: Env) -> st.SearchStrategy[Drawn]:
    ack = st.builds(
        platforms_pb2.Ack,
        order_id=st.sampled_from(env.order_ids),
        outcome=st.sampled_from([1, 2]),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.AckEventsRequest(
            request_id=draw(printable), acks=draw(st.lists(ack, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.acks) - 1))
        common = ["rid", "empty", "order", "outcome", "no reason", "long reason", "reason"]
        kind = draw(kinds(common, ["oversize"]))
        target = req.acks[at]
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no acks"
            del req.acks[:]
        elif kind == "oversize":
            name = f"{MAX_ACKS + 1} acks"
            req = oversize(req, "acks", MAX_ACKS)
        elif kind == "order":
            name = "unknown or malformed order id"
            target.order_id = draw(
                st.one_of(
                    st.just(""),
                    printable.filter(lambda s: s not in env.order_ids),
                    st.sampled_from([env.revocation_id, env.key_id, env.platform_id]),
                )
            )
        elif kind == "outcome":
            name = "outcome out of range"
            target.outcome = draw(st.one_of(st.just(0), st.integers(5, 100), bad_enum))  # type: ignore[assignment]
        elif kind == "no reason":
            name = "REJECTED without a reason"
            target.outcome = platforms_pb2.ACK_OUTCOME_REJECTED
            target.reason = draw(st.sampled_from(["", " ", "\n"]))
        elif kind == "long reason":
            name = "reason too long"
            target.outcome = platforms_pb2.ACK_OUTCOME_REJECTED
            target.reason = "r" * draw(st.integers(MAX_REASON + 1, 5000))
        else:
            name = "reason on an outcome that takes none"
            target.reason = draw(printable)
        return "AckEvents: " + name, req

    return build()


# ---- Admin ----------------------------------------------------------------------------------

_PRINCIPAL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_bad_principal_ids = st.one_of(
    st.sampled_from(["", "UPPER", "-dash", ".dot", "a b", "x" * 64, "名字", "a/b", "<b>"]),
    st.text(min_size=1, max_size=80).filter(lambda s: not _PRINCIPAL_ID.fullmatch(s)),
)


def _names(env: Env) -> st.SearchStrategy[str]:
    """Fresh names to register (were a bad registration accepted, it would take one)."""
    return st.integers(0, 10**9).map(lambda n: f"fz{n}")


def _unknown_names(env: Env) -> st.SearchStrategy[str]:
    """Names no principal has: never drawn by _names."""
    return st.integers(0, 10**9).map(lambda n: f"unknown{n}")


def _bad_display_names() -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.sampled_from([("display_name empty", ""), ("display_name blank", "   ")]),
        st.integers(65, 2000).map(lambda n: ("display_name too long", "名" * n)),
        st.sampled_from(["a\x00b", "line\nbreak", "tab\there", "\u202eevil", "bell\x07"]).map(
            lambda s: ("display_name not printable", s)
        ),
    )


def _bad_categories() -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.integers(65, 2000).map(lambda n: ("category too long", "c" * n)),
        st.sampled_from(
            ["<script>alert(1)</script>", "<b>bank</b>", "not-a-category", "Bank "]
        ).map(lambda s: ("category outside the vocabulary", s)),
    )


def _bad_attestation_keys() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(
        st.binary(max_size=64)
        .filter(lambda b: len(b) != 32)
        .map(lambda b: ("attestation key wrong length", b)),
        st.just(("attestation key all zero", bytes(32))),
        # The identity and a small-order point: valid encodings, useless as keys.
        st.sampled_from(
            [
                ("attestation key identity", b"\x01" + bytes(31)),
                (
                    "attestation key small order",
                    bytes.fromhex(
                        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
                    ),
                ),
            ]
        ),
    )


def register_platform(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.RegisterPlatformRequest(
            request_id=draw(printable),
            platform_id=draw(_names(env)),
            display_name="Fuzz Platform",
            category="other",
            csr_pem=env.csr_pem,
        )
        kind = draw(st.sampled_from(["rid", "id", "exists", "name", "category", "csr"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "id":
            name = "malformed platform_id"
            req.platform_id = draw(_bad_principal_ids)
        elif kind == "exists":
            name = "platform_id taken"
            req.platform_id = env.platform_id
        elif kind == "name":
            name, req.display_name = draw(_bad_display_names())
        elif kind == "category":
            name, req.category = draw(_bad_categories())
        else:
            name = "csr not a CSR"
            req.csr_pem = draw(
                st.sampled_from(["", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "x"])
            )
        return "RegisterPlatform: " + name, req

    return build()


def register_carrier(env: Env) -> st.SearchStrategy[Drawn]:
    good_key = nacl.signing.SigningKey(b"\x07" * 32).verify_key.encode()

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.RegisterCarrierRequest(
            request_id=draw(printable),
            carrier_id=draw(_names(env)),
            display_name="Fuzz Carrier",
            csr_pem=env.csr_pem,
            attestation_public_key=good_key,
        )
        kind = draw(st.sampled_from(["rid", "id", "exists", "name", "key", "csr"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "id":
            name = "malformed carrier_id"
            req.carrier_id = draw(_bad_principal_ids)
        elif kind == "exists":
            name = "carrier_id taken"
            req.carrier_id = env.carrier_id
        elif kind == "name":
            name, req.display_name = draw(_bad_display_names())
        elif kind == "key":
            name, req.attestation_public_key = draw(_bad_attestation_keys())
        else:
            name = "csr not a CSR"
            req.csr_pem = draw(st.sampled_from(["", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"]))
        return "RegisterCarrier: " + name, req

    return build()


def set_suspended(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.SetPrincipalSuspendedRequest(
            request_id=draw(printable),
            role=admin_pb2.PRINCIPAL_ROLE_PLATFORM,
            principal_id=env.platform_id,
            suspended=True,
        )
        kind = draw(st.sampled_from(["role", "id", "unknown"]))
        if kind == "role":
            name = "role out of range"
            req.role = draw(st.one_of(st.just(0), st.integers(4, 100), bad_enum))  # type: ignore[assignment]
        elif kind == "id":
            name = "malformed principal_id"
            req.principal_id = draw(_bad_principal_ids)
        else:
            name = "unknown principal"
            req.principal_id = draw(_unknown_names(env))
        return "SetPrincipalSuspended: " + name, req

    return build()


def set_attestation_key(env: Env) -> st.SearchStrategy[Drawn]:
    good_key = nacl.signing.SigningKey(b"\x09" * 32).verify_key.encode()

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.SetCarrierAttestationKeyRequest(
            request_id=draw(printable), carrier_id=env.carrier_id, attestation_public_key=good_key
        )
        kind = draw(st.sampled_from(["id", "unknown", "platform", "key"]))
        if kind == "id":
            name = "malformed carrier_id"
            req.carrier_id = draw(_bad_principal_ids)
        elif kind == "unknown":
            name = "unknown carrier"
            req.carrier_id = draw(_unknown_names(env))
        elif kind == "platform":
            name = "a platform's id as carrier_id"
            req.carrier_id = env.platform_id
        else:
            name, req.attestation_public_key = draw(_bad_attestation_keys())
        return "SetCarrierAttestationKey: " + name, req

    return build()


def rotate_key(env: Env) -> st.SearchStrategy[Drawn]:
    return bad_request_ids.map(
        lambda r: ("RotateKey: bad request_id", admin_pb2.RotateKeyRequest(request_id=r))
    )


def retire_key(env: Env) -> st.SearchStrategy[Drawn]:
    return st.one_of(st.just(("the active key", env.key_id)), bad_key_ids(env)).map(
        lambda d: (
            "RetireKey: " + d[0],
            admin_pb2.RetireKeyRequest(request_id="retire-fuzz", key_id=d[1]),
        )
    )


def export_key(env: Env) -> st.SearchStrategy[Drawn]:
    # "" exports the active key, like Evaluate's default: not a defect.
    return (
        bad_key_ids(env)
        .filter(lambda d: d[1] != "")
        .map(lambda d: ("ExportKey: " + d[0], admin_pb2.ExportKeyRequest(key_id=d[1])))
    )
