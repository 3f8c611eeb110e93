"""What the PublishBindings, WithdrawBindings, GetDigest and ListBindings tests share: a
platform's stub over real gRPC with mTLS, bindings to send, and the digest and listings to
compare with what the platform sent."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from numbind.protocol.digest import EMPTY_DIGEST, binding_digest, bucket_of, xor
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    common_pb2,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

from tests.tokens import random_token

US = 1_000_000
NOW_US = time.time_ns() // 1000
Stub = platforms_pb2_grpc.PlatformsStub
Pub = platforms_pb2.PublishBindingsRequest
Wd = platforms_pb2.WithdrawBindingsRequest


@dataclass
class Platform:
    # PlatformsStub on an aio channel is the async stub: its calls are awaited.
    stub: platforms_pb2_grpc.PlatformsAsyncStub
    key_id: str


@asynccontextmanager
async def connect(reg: RunningRegistry, name: str) -> AsyncIterator[Platform]:
    """A newly registered platform's stub, with the registry's active key id."""
    async with secure_channel(reg.add_platform(name)) as channel:
        keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
        yield Platform(Stub(channel), keys.active_key_id)


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


async def refusal(call: Callable[[], Awaitable[object]]) -> str:
    """The details of the INVALID_ARGUMENT the call must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""
