"""PublishBindings, WithdrawBindings, GetDigest and ListBindings over real gRPC with mTLS,
on every storage backend."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol.digest import EMPTY_DIGEST, binding_digest, bucket_of, xor
from numbind.registry.storage.models import KeyDeltaRow
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    common_pb2,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)
from sqlalchemy import select

from tests.e2e._rekey import rekeyed, retire, rotate, wait_rekeyed
from tests.tokens import random_token, token_in_bucket

US = 1_000_000
NOW_US = time.time_ns() // 1000
Stub = platforms_pb2_grpc.PlatformsStub
Pub = platforms_pb2.PublishBindingsRequest
Wd = platforms_pb2.WithdrawBindingsRequest


@dataclass
class Platform:
    stub: Stub
    key_id: str


@asynccontextmanager
async def connect(reg: RunningRegistry, name: str) -> AsyncIterator[Platform]:
    """A newly registered platform's stub, with the registry's active key id."""
    async with secure_channel(reg.add_platform(name)) as channel:
        keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
        yield Platform(Stub(channel), keys.active_key_id)


@pytest.fixture
async def acme(registry_any_store: RunningRegistry) -> AsyncIterator[Platform]:
    async with connect(registry_any_store, "acme") as p:
        yield p


def make(
    key_id: str,
    token: bytes | None = None,
    ref: bytes | None = None,
    bound_us: int = NOW_US - 86_400 * US,
    kind: int = common_pb2.BINDING_KIND_LOGIN,
) -> common_pb2.Binding:
    b = common_pb2.Binding(
        token=common_pb2.Token(key_id=key_id, value=token or random_token()),
        account_ref=os.urandom(16) if ref is None else ref,
        kind=kind,  # type: ignore[arg-type]
    )
    if bound_us:
        b.bound_at.FromMicroseconds(bound_us)
    return b


def key_of(b: common_pb2.Binding) -> common_pb2.BindingKey:
    return common_pb2.BindingKey(token=b.token, account_ref=b.account_ref)


def expected(bindings: list[common_pb2.Binding], bits: int) -> dict[int, tuple[int, bytes]]:
    """The digest a platform computes on its side, with the shared module."""
    out: dict[int, tuple[int, bytes]] = {}
    for b in bindings:
        us = b.bound_at.seconds * US + b.bound_at.nanos // 1000
        d = binding_digest(b.token.key_id, b.token.value, b.account_ref, us, b.kind)
        bucket = bucket_of(b.token.value, bits)
        count, acc = out.get(bucket, (0, EMPTY_DIGEST))
        out[bucket] = (count + 1, xor(acc, d))
    return out


async def digest(p: Platform, bits: int = 0, key_id: str = "") -> dict[int, tuple[int, bytes]]:
    resp = await p.stub.GetDigest(platforms_pb2.GetDigestRequest(bucket_bits=bits, key_id=key_id))
    assert resp.bucket_bits == bits
    assert [b.bucket for b in resp.buckets] == sorted({b.bucket for b in resp.buckets})
    return {b.bucket: (b.count, b.digest) for b in resp.buckets}


async def list_bucket(
    p: Platform, bits: int, bucket: int, page_size: int, key_id: str = ""
) -> list[common_pb2.Binding]:
    out: list[common_pb2.Binding] = []
    token = ""
    while True:
        resp = await p.stub.ListBindings(
            platforms_pb2.ListBindingsRequest(
                bucket_bits=bits,
                bucket=bucket,
                key_id=key_id,
                page_size=page_size,
                page_token=token,
            )
        )
        out += resp.bindings
        assert len(resp.bindings) <= (page_size or 1000)
        if not resp.next_page_token:
            return out
        token = resp.next_page_token


def ident(b: common_pb2.Binding) -> bytes:
    return b.SerializeToString(deterministic=True)


async def test_publish_then_retry_then_republish(acme: Platform) -> None:
    batch = [make(acme.key_id, kind=1 + i % 5) for i in range(50)]
    first = await acme.stub.PublishBindings(Pub(request_id="pub-1", bindings=batch))
    assert (first.inserted, first.updated, first.unchanged) == (50, 0, 0)
    for bits in (0, 4, 16):
        assert await digest(acme, bits) == expected(batch, bits)
    # A retry answers the same counts and changes nothing: applied again, it would bring
    # back the binding withdrawn since.
    await acme.stub.WithdrawBindings(Wd(request_id="wd-1", bindings=[key_of(batch[0])]))
    retry = await acme.stub.PublishBindings(Pub(request_id="pub-1", bindings=batch))
    assert retry == first
    assert await digest(acme, 4) == expected(batch[1:], 4)
    # The same bindings under a new id: the withdrawn one returns, the rest are unchanged.
    again = await acme.stub.PublishBindings(Pub(request_id="pub-2", bindings=batch))
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 49)
    assert await digest(acme, 4) == expected(batch, 4)
    # Changed bound_at or kind updates; new ones insert.
    changed = [
        make(acme.key_id, b.token.value, b.account_ref, NOW_US - 7 * 86_400 * US, b.kind)
        for b in batch[:5]
    ]
    changed += [
        make(acme.key_id, b.token.value, b.account_ref, kind=1 + b.kind % 5) for b in batch[5:10]
    ]
    fresh = [make(acme.key_id) for _ in range(5)]
    resp = await acme.stub.PublishBindings(
        Pub(request_id="pub-3", bindings=changed + batch[10:] + fresh)
    )
    assert (resp.inserted, resp.updated, resp.unchanged) == (5, 10, 40)
    assert await digest(acme, 16) == expected(changed + batch[10:] + fresh, 16)


async def test_same_request_id_with_another_body_is_already_exists(acme: Platform) -> None:
    batch = [make(acme.key_id) for _ in range(3)]
    await acme.stub.PublishBindings(Pub(request_id="dup-id", bindings=batch))
    before = await digest(acme, 8)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await acme.stub.PublishBindings(
            Pub(request_id="dup-id", bindings=[*batch, make(acme.key_id)])
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "dup-id" in (err.value.details() or "")
    await acme.stub.WithdrawBindings(Wd(request_id="wd-id", bindings=[key_of(batch[0])]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await acme.stub.WithdrawBindings(Wd(request_id="wd-id", bindings=[key_of(batch[1])]))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "wd-id" in (err.value.details() or "")
    assert await digest(acme, 8) == expected(batch[1:], 8) != before


async def test_withdraw_then_retry_then_publish_again(acme: Platform) -> None:
    batch = [make(acme.key_id) for _ in range(20)]
    await acme.stub.PublishBindings(Pub(request_id="p1", bindings=batch))
    gone = [key_of(b) for b in batch[:8]]
    resp = await acme.stub.WithdrawBindings(Wd(request_id="w1", bindings=gone))
    assert (resp.withdrawn, resp.not_found) == (8, 0)
    # A retry answers the same and changes nothing: batch[0], published again since, stays.
    back = await acme.stub.PublishBindings(Pub(request_id="p1b", bindings=batch[:1]))
    assert (back.inserted, back.updated, back.unchanged) == (0, 1, 0)
    retry = await acme.stub.WithdrawBindings(Wd(request_id="w1", bindings=gone))
    assert retry == resp
    unknown = key_of(make(acme.key_id))
    resp = await acme.stub.WithdrawBindings(
        Wd(request_id="w2", bindings=[*gone[1:4], key_of(batch[9]), unknown])
    )
    assert (resp.withdrawn, resp.not_found) == (1, 4)
    left = [b for i, b in enumerate(batch) if i in (0, 8) or i >= 10]
    assert await digest(acme, 0) == expected(left, 0)
    assert sorted(map(ident, await list_bucket(acme, 0, 0, 0))) == sorted(map(ident, left))
    # Published again, withdrawn bindings are active again and count as updated.
    resp2 = await acme.stub.PublishBindings(Pub(request_id="p2", bindings=batch))
    assert (resp2.inserted, resp2.updated, resp2.unchanged) == (0, 8, 12)
    assert await digest(acme, 0) == expected(batch, 0)


async def test_a_platform_never_sees_or_touches_another_platforms_bindings(
    registry_any_store: RunningRegistry,
) -> None:
    async with (
        connect(registry_any_store, "acme") as acme,
        connect(registry_any_store, "bank") as bank,
    ):
        mine = [make(acme.key_id, token_in_bucket(i)) for i in range(30)]
        await acme.stub.PublishBindings(Pub(request_id="r1", bindings=mine))
        before = await digest(acme, 16)
        assert await digest(bank, 0) == {}
        assert await digest(bank, 16) == {}
        assert await list_bucket(bank, 0, 0, 10) == []
        assert await list_bucket(bank, 16, 0, 10) == []
        resp = await bank.stub.WithdrawBindings(
            Wd(request_id="r1", bindings=[key_of(b) for b in mine])
        )
        assert (resp.withdrawn, resp.not_found) == (0, 30)
        # The same key published by the other platform is that platform's own binding,
        # and request ids are per platform.
        theirs = await bank.stub.PublishBindings(Pub(request_id="r1", bindings=mine[:5]))
        assert theirs.inserted == 5
        await bank.stub.WithdrawBindings(
            Wd(request_id="r2", bindings=[key_of(b) for b in mine[:5]])
        )
        assert await digest(acme, 16) == before == expected(mine, 16)
        assert len(await list_bucket(acme, 8, 0, 7)) == 30


async def test_list_pages_cover_every_bucket_exactly_once(acme: Platform) -> None:
    # Crowded prefixes so that pages end in the middle of a 16-bit bucket as well.
    batch = [make(acme.key_id, token_in_bucket((i % 3) << 8 | i % 2)) for i in range(90)]
    batch += [make(acme.key_id) for _ in range(60)]
    await acme.stub.PublishBindings(Pub(request_id="p", bindings=batch))
    want = sorted(map(ident, batch))
    for bits in (0, 1, 3):
        seen: list[bytes] = []
        for bucket in range(1 << bits):
            page = await list_bucket(acme, bits, bucket, 7)
            assert all(bucket_of(b.token.value, bits) == bucket for b in page)
            seen += map(ident, page)
        assert sorted(seen) == want
    assert sorted(map(ident, await list_bucket(acme, 0, 0, 0))) == want
    for bucket in {bucket_of(b.token.value, 16) for b in batch}:
        page = await list_bucket(acme, 16, bucket, 4, key_id=acme.key_id)
        assert sorted(map(ident, page)) == sorted(
            ident(b) for b in batch if bucket_of(b.token.value, 16) == bucket
        )


def _set(field: str, value: object) -> Callable[[common_pb2.Binding], None]:
    def apply(b: common_pb2.Binding) -> None:
        if field == "bound_at":
            b.ClearField("bound_at")
            if value:
                assert isinstance(value, int)
                b.bound_at.CopyFrom(_ts(value))
        elif field in ("key_id", "value"):
            setattr(b.token, field, value)
        else:
            setattr(b, field, value)

    return apply


def _ts(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


# (what is wrong, change to item 3 of a valid batch of 6, words the message must contain)
BAD_ITEMS = [
    ("31-byte token", _set("value", bytes(31)), "bindings[3].token.value: got 31 bytes"),
    ("identity token", _set("value", bytes(32)), "bindings[3].token.value: got the identity"),
    (
        "odd (negative) encoding",
        _set("value", b"\x01" + bytes(31)),
        "bindings[3].token.value: got a non-canonical or invalid encoding, want a canonical",
    ),
    (
        "non-canonical encoding (p)",
        _set("value", (2**255 - 19).to_bytes(32, "little")),
        "bindings[3].token.value: got a non-canonical or invalid encoding",
    ),
    ("empty token", _set("value", b""), "bindings[3].token.value: got 0 bytes"),
    ("unknown key id", _set("key_id", "00000000000000ff"), "bindings[3].token.key_id"),
    ("malformed key id", _set("key_id", "Nope"), "bindings[3].token.key_id: got 'Nope'"),
    ("empty account_ref", _set("account_ref", b""), "bindings[3].account_ref: got 0 bytes"),
    ("65-byte ref", _set("account_ref", bytes(65)), "bindings[3].account_ref: got 65 bytes"),
    ("kind unspecified", _set("kind", 0), "bindings[3].kind: got 0"),
    ("kind out of range", _set("kind", 9), "bindings[3].kind: got 9"),
    ("bound_at future", _set("bound_at", NOW_US + 3600 * US), "bindings[3].bound_at: got 20"),
    ("bound_at 1989", _set("bound_at", 599_616_000 * US), "bindings[3].bound_at: got 1989"),
    ("bound_at unset", _set("bound_at", 0), "bindings[3].bound_at: got unset"),
]


async def test_every_bad_publish_is_invalid_argument_and_writes_nothing(acme: Platform) -> None:
    kept = [make(acme.key_id) for _ in range(4)]
    await acme.stub.PublishBindings(Pub(request_id="good", bindings=kept))
    before = await digest(acme, 16)

    async def refused(request: Pub, words: str) -> None:
        details = await refusal(lambda: acme.stub.PublishBindings(request))
        assert words in details, (words, details)
        assert await digest(acme, 16) == before, words

    for what, change, words in BAD_ITEMS:
        batch = [make(acme.key_id) for _ in range(6)]
        change(batch[3])
        await refused(Pub(request_id=f"bad-{what.replace(' ', '-')}", bindings=batch), words)
    batch = [make(acme.key_id) for _ in range(6)]
    batch[5] = make(acme.key_id, batch[2].token.value, batch[2].account_ref, kind=2)
    await refused(
        Pub(request_id="dup", bindings=batch),
        "bindings[5]: got the same token and account_ref as bindings[2]",
    )
    await refused(Pub(request_id="empty", bindings=[]), "bindings: got 0 items, want 1..10000")
    big = [make(acme.key_id) for _ in range(10_001)]
    await refused(Pub(request_id="big", bindings=big), "bindings: got 10001 items")
    for rid in ("", "has space", "x" * 129):
        await refused(Pub(request_id=rid, bindings=kept), "request_id: got")
    # Refused requests consumed nothing: their ids are still free.
    ok = await acme.stub.PublishBindings(Pub(request_id="bad-kind-unspecified", bindings=kept))
    assert ok.unchanged == 4


async def refusal(call: Callable[[], Awaitable[object]]) -> str:
    """The details of the INVALID_ARGUMENT the call must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


async def test_every_bad_withdraw_digest_or_list_is_invalid_argument(acme: Platform) -> None:
    kept = [make(acme.key_id, token_in_bucket(0x0707)) for _ in range(3)]
    await acme.stub.PublishBindings(Pub(request_id="good", bindings=kept))
    before = await digest(acme, 16)
    good = key_of(make(acme.key_id))
    short = common_pb2.BindingKey(
        token=common_pb2.Token(key_id=acme.key_id, value=bytes(10)), account_ref=b"a"
    )
    no_ref = common_pb2.BindingKey(token=kept[0].token, account_ref=b"")
    Call = Callable[[], Awaitable[object]]

    def wd(*keys: common_pb2.BindingKey, rid: str = "w") -> Call:
        return lambda: acme.stub.WithdrawBindings(Wd(request_id=rid, bindings=keys))

    def dg(**fields: object) -> Call:
        return lambda: acme.stub.GetDigest(platforms_pb2.GetDigestRequest(**fields))  # type: ignore[arg-type]

    def ls(**fields: object) -> Call:
        return lambda: acme.stub.ListBindings(platforms_pb2.ListBindingsRequest(**fields))  # type: ignore[arg-type]

    cases: list[tuple[Call, str]] = [
        (wd(), "bindings: got 0 items"),
        (wd(good, short), "bindings[1].token.value: got 10 bytes"),
        (wd(key_of(kept[1]), no_ref), "bindings[1].account_ref: got 0 bytes"),
        (
            wd(key_of(kept[0]), good, key_of(kept[0])),
            "bindings[2]: got the same token and account_ref as bindings[0]",
        ),
        (wd(key_of(kept[0]), rid=""), "request_id: got ''"),
        (dg(bucket_bits=17), "bucket_bits: got 17, want 0..16"),
        (dg(key_id="KEY"), "key_id: got 'KEY'"),
        (ls(bucket_bits=17), "bucket_bits: got 17, want 0..16"),
        (ls(bucket_bits=2, bucket=4), "bucket: got 4, want 0..3"),
        (ls(page_size=10_001), "page_size: got 10001"),
        (ls(page_token="not*base64"), "page_token: got"),
    ]
    for call, words in cases:
        details = await refusal(call)
        assert words in details, (words, details)
    # A real page token, replayed against another bucket, is refused too.
    first = await acme.stub.ListBindings(
        platforms_pb2.ListBindingsRequest(bucket_bits=16, bucket=0x0707, page_size=1)
    )
    assert first.next_page_token
    details = await refusal(
        lambda: acme.stub.ListBindings(
            platforms_pb2.ListBindingsRequest(
                bucket_bits=16, bucket=0x0708, page_token=first.next_page_token
            )
        )
    )
    assert "page_token: got" in details
    assert await digest(acme, 16) == before


async def test_rotation_keeps_bindings_and_a_retired_key_is_refused(
    registry_any_store: RunningRegistry,
) -> None:
    reg = registry_any_store
    async with connect(reg, "acme") as acme:
        old = [make(acme.key_id) for _ in range(3)]
        await acme.stub.PublishBindings(Pub(request_id="old", bindings=old))
        new_key = (await rotate(reg)).key
        # Rotated out but not retired: still live, and mapped to the store key, so the
        # same bindings are the same bindings (nothing inserted, nothing changed).
        resp = await acme.stub.PublishBindings(Pub(request_id="still", bindings=old))
        assert (resp.inserted, resp.updated, resp.unchanged) == (0, 0, 3)
        await wait_rekeyed(reg)
        moved = [
            make(
                new_key.key_id,
                rekeyed(reg, acme.key_id, new_key.key_id, b.token.value),
                b.account_ref,
                _us(b),
            )
            for b in old
        ]
        assert await digest(acme, 2, new_key.key_id) == expected(moved, 2)
        assert await digest(acme, 2) == expected(moved, 2)
        assert _delta_of(reg, acme.key_id) is not None
        await retire(reg, acme.key_id)
        # Retiring forgets the delta: its tokens can no longer be mapped, and a later leak
        # of the retired key does not yield the active one.
        assert _delta_of(reg, acme.key_id) is None
        details = await refusal(
            lambda: acme.stub.PublishBindings(Pub(request_id="after", bindings=[make(acme.key_id)]))
        )
        assert f"bindings[0].token.key_id: {acme.key_id} is retired" in details
        # Reconciliation answers in the store key only, naming it.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await digest(acme, 2, acme.key_id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert dict(err.value.trailing_metadata() or ())["store-key-id"] == new_key.key_id
        # What was published under the retired key is withdrawn under the new one.
        resp2 = await acme.stub.WithdrawBindings(
            Wd(request_id="w", bindings=[key_of(b) for b in moved])
        )
        assert resp2.withdrawn == 3


def _delta_of(reg: RunningRegistry, key_id: str) -> bytes | None:
    return reg.registry.db.transact(
        lambda s: s.scalar(select(KeyDeltaRow.delta).where(KeyDeltaRow.key_id == key_id)),
        write=False,
    )


def _us(b: common_pb2.Binding) -> int:
    return b.bound_at.seconds * US + b.bound_at.nanos // 1000


async def test_concurrent_publishers_of_the_same_bindings_all_succeed(acme: Platform) -> None:
    batch = [make(acme.key_id) for _ in range(300)]
    rounds = await asyncio.gather(
        *(
            acme.stub.PublishBindings(Pub(request_id=f"c{i}", bindings=batch[i * 20 :]))
            for i in range(6)
        )
    )
    assert sum(r.inserted for r in rounds) == 300
    assert all(r.inserted + r.unchanged == 300 - i * 20 for i, r in enumerate(rounds))
    assert await digest(acme, 4) == expected(batch, 4)
