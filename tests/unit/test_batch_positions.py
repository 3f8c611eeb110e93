"""Batched SDK calls name a refused item by its 1-based position in the caller's whole
input, whatever batch it travelled in (fake stubs; the e2e tests use a real registry)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from numbind.protocol import voprf
from numbind.sdk import BindingKey, InvalidRequest, Kind, PlatformClient, Record, RetryPolicy
from numbind.sdk.bindings import BindingRpc
from numbind.sdk.errors import ErrorCode
from numbind.sdk.tokenizer import PinnedKey, Tokenizer
from numbind.v1 import platforms_pb2, tokens_pb2

from tests.unit._bundles import bare_platform_bundle

WHEN = datetime(2024, 1, 1, tzinfo=UTC)
KEY = "a" * 16


def _refusal(message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(), message
    )


class _Stub:
    """Publish/WithdrawBindings that answer, except call number ``refuse`` (1-based)."""

    def __init__(self, refuse: int, message: str) -> None:
        self.refuse = refuse
        self.message = message
        self.requests: list[Any] = []

    def PublishBindings(self, request: Any, **_: Any) -> Awaitable[Any]:
        return self._answer(request, platforms_pb2.PublishBindingsResponse)

    def WithdrawBindings(self, request: Any, **_: Any) -> Awaitable[Any]:
        return self._answer(request, platforms_pb2.WithdrawBindingsResponse)

    async def _answer(self, request: Any, response: Any) -> Any:
        self.requests.append(request)
        if len(self.requests) == self.refuse:
            raise _refusal(self.message)
        return response()


def _client(tmp_path: Path, stub: _Stub, batch_size: int) -> PlatformClient:
    bundle = bare_platform_bundle(tmp_path)
    client = PlatformClient(bundle, batch_size=batch_size, in_flight=1)
    # No registry here: stand in for the channel's stub and tokenizer.
    client._channel = cast(Any, object())
    client._rpc = BindingRpc(cast(Any, stub), in_flight=1, retry=RetryPolicy(), timeout=5.0)
    client._tokenizer = cast(Any, object())
    return client


def _record(i: int, ref: bytes = b"r") -> Record:
    return Record(i.to_bytes(4, "big") * 8, KEY, ref, WHEN, Kind.LOGIN)


async def test_a_refused_binding_is_named_by_its_place_in_the_whole_input(tmp_path: Path) -> None:
    stub = _Stub(refuse=2, message="bindings[3].bound_at: got 2031-01-01T00:00:00Z, want past")
    client = _client(tmp_path, stub, batch_size=10_000)
    with pytest.raises(InvalidRequest) as err:
        await client.publish_records([_record(i) for i in range(10_010)])
    assert str(err.value) == "binding 10,004: bound_at: got 2031-01-01T00:00:00Z, want past"
    assert (err.value.position, err.value.item, err.value.code) == (
        10_004,
        "binding",
        ErrorCode.INVALID_ARGUMENT,
    )


async def test_a_repeat_inside_a_batch_is_named_by_the_row_that_was_sent(tmp_path: Path) -> None:
    # Rows 1..3 of batch 2 are inputs 4..6; input 6 repeats input 4's binding and wins, so
    # the request's first binding is input 6.
    stub = _Stub(refuse=2, message="bindings[0].kind: got 9, want one of LOGIN, ...")
    client = _client(tmp_path, stub, batch_size=3)
    records = [_record(i) for i in range(5)] + [_record(3)]
    with pytest.raises(InvalidRequest) as err:
        await client.publish_records(records)
    assert len(stub.requests[1].bindings) == 2
    assert err.value.position == 6 and str(err.value).startswith("binding 6: kind: got 9")


async def test_a_refused_withdrawal_is_named_the_same_way(tmp_path: Path) -> None:
    stub = _Stub(refuse=3, message="bindings[1].token.key_id: 00000000000000ff is not live")
    client = _client(tmp_path, stub, batch_size=2)
    keys = [BindingKey(_record(i).token, KEY, b"r") for i in range(6)]
    with pytest.raises(InvalidRequest) as err:
        await client.withdraw_keys(keys)
    assert str(err.value) == "binding 6: token.key_id: 00000000000000ff is not live"


async def test_a_message_about_the_request_keeps_its_words(tmp_path: Path) -> None:
    stub = _Stub(refuse=1, message="request_id: got '', want 1..64 characters")
    client = _client(tmp_path, stub, batch_size=2)
    with pytest.raises(InvalidRequest) as err:
        await client.publish_records([_record(0)])
    assert str(err.value) == "request_id: got '', want 1..64 characters"
    assert err.value.position is None


class _Evaluate:
    """Tokens.Evaluate with a real key and proof, except that its ``refuse``-th call is
    refused naming element 2 of that request."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.calls = 0
        self.secret, self.public = voprf.derive_key_pair(b"\x01" * 32, b"test", voprf.MODE_VOPRF)

    def Evaluate(self, request: Any, **_: Any) -> Awaitable[Any]:
        return self._answer(request)

    async def _answer(self, request: Any) -> Any:
        self.calls += 1
        if self.calls == self.refuse:
            raise _refusal("blinded_elements[2]: not a canonical ristretto255 encoding")
        blinded = list(request.blinded_elements)
        evaluated, proof = voprf.voprf_blind_evaluate(self.secret, self.public, blinded)
        return tokens_pb2.EvaluateResponse(
            key_id=request.key_id, evaluated_elements=evaluated, proof=proof
        )


async def test_a_refused_blinded_element_is_named_as_the_number() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:9")
    tokenizer = Tokenizer(channel, batch_size=3, in_flight=1)
    try:
        service = _Evaluate(refuse=2)
        tokenizer._key = PinnedKey(KEY, service.public)
        tokenizer._stub = cast(Any, service)
        numbers = [f"+86138001380{i:02d}" for i in range(7)]
        # Batches of 3: the second request holds numbers 4..6, its element 2 is number 6.
        with pytest.raises(InvalidRequest) as err:
            await tokenizer.tokenize(numbers)
        assert str(err.value).startswith("number 6: not a canonical")
        assert err.value.position == 6
    finally:
        tokenizer.close()
        await channel.close()
