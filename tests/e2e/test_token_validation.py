"""Every RPC that carries a token accepts it only as a canonical, non-identity ristretto255
encoding under a live key: otherwise INVALID_ARGUMENT naming the field and the index, and
nothing is written."""

from __future__ import annotations

import uuid

import grpc
import pytest
from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    carriers_pb2,
    carriers_pb2_grpc,
    common_pb2,
    holders_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
)

from tests.e2e._rekey import retire, rotate, stats, wait_rekeyed
from tests.e2e._story import days_ago, ts
from tests.tokens import random_token

P = 2**255 - 19
BAD_VALUES = [
    (bytes(32), "got the identity"),
    (b"\x01" + bytes(31), "got a non-canonical or invalid encoding"),  # negative
    (P.to_bytes(32, "little"), "got a non-canonical or invalid encoding"),  # not reduced
    (b"\xff" * 32, "got a non-canonical or invalid encoding"),  # top bit set
    (bytes(33), "got 33 bytes"),
]


async def _refused(call: object, words: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert words in (err.value.details() or ""), (words, err.value.details())


def _report(key_id: str, values: list[bytes]) -> carriers_pb2.ReportLifecycleRequest:
    return carriers_pb2.ReportLifecycleRequest(
        request_id=uuid.uuid4().hex,
        events=[
            carriers_pb2.LifecycleEvent(
                token=common_pb2.Token(key_id=key_id, value=v),
                kind=carriers_pb2.LIFECYCLE_KIND_ISSUED,
                effective_at=ts(days_ago(1)),
            )
            for v in values
        ],
    )


def _reassigned(key_id: str, values: list[bytes]) -> platforms_pb2.CheckReassignedRequest:
    return platforms_pb2.CheckReassignedRequest(
        queries=[
            platforms_pb2.ReassignedQuery(
                token=common_pb2.Token(key_id=key_id, value=v), since=ts(days_ago(1))
            )
            for v in values
        ]
    )


def _query(cm: Bundle, key_id: str, value: bytes) -> holders_pb2.QueryBindingsRequest:
    data, sig = attestation.issue(
        cm.attestation_signing_key(),
        carrier_id="cm",
        token=value,
        key_id=key_id,
        subject="sub",
        tenure_start_us=int(days_ago(30).timestamp() * 1e6),
        purpose=attestation.Purpose.QUERY,
    )
    return holders_pb2.QueryBindingsRequest(
        attestations=[holders_pb2.SignedAttestation(attestation=data, signature=sig)]
    )


async def test_every_token_entry_refuses_bad_elements_and_retired_keys(
    registry: RunningRegistry,
) -> None:
    cm, p = registry.add_carrier("cm"), registry.add_platform("p")
    key = registry.registry.keys.active().key_id
    good = random_token()
    async with secure_channel(cm) as c_chan, secure_channel(p) as p_chan:
        carriers = carriers_pb2_grpc.CarriersStub(c_chan)
        holders = holders_pb2_grpc.HoldersStub(c_chan)
        platforms = platforms_pb2_grpc.PlatformsStub(p_chan)
        for value, words in BAD_VALUES:
            await _refused(
                carriers.ReportLifecycle(_report(key, [good, value])),
                f"events[1].token.value: {words}",
            )
            await _refused(
                platforms.CheckReassigned(_reassigned(key, [good, good, value])),
                f"queries[2].token.value: {words}",
            )
            if len(value) == 32:  # the attestation itself refuses other lengths
                await _refused(
                    holders.QueryBindings(_query(cm, key, value)),
                    f"attestations[0].token.value: {words}",
                )
        assert (await stats(registry)).numbers == 0  # nothing reported was written

        # A retired key's tokens are refused everywhere, naming the key.
        await carriers.ReportLifecycle(_report(key, [good]))
        await rotate(registry)
        await wait_rekeyed(registry)
        await retire(registry, key)
        retired = f"{key} is retired and its tokens are no longer accepted"
        await _refused(
            carriers.ReportLifecycle(_report(key, [good])), f"events[0].token.key_id: {retired}"
        )
        await _refused(
            platforms.CheckReassigned(_reassigned(key, [good])),
            f"queries[0].token.key_id: {retired}",
        )
        await _refused(
            holders.QueryBindings(_query(cm, key, good)), f"attestations[0].key_id: {retired}"
        )
        await _refused(
            carriers.ReportLifecycle(_report("00000000000000ff", [good])),
            "events[0].token.key_id: 00000000000000ff is not a key of this registry",
        )
