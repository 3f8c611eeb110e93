"""PublishBindings and WithdrawBindings over real gRPC with mTLS, on every storage backend:
retries and request ids, withdrawing and publishing again, one platform's bindings kept
from another, ListBindings pages, and concurrent publishers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from numbind.protocol.digest import bucket_of
from numbind.registry.testing import RunningRegistry

from tests.e2e._bindings import (
    NOW_US,
    US,
    Platform,
    Pub,
    Wd,
    connect,
    digest,
    expected,
    ident,
    key_of,
    list_bucket,
    make,
)
from tests.tokens import token_in_bucket


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
