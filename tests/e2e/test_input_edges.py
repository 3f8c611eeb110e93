"""Input edges an attack review found open (issue 10, finding 3): a feed cursor out of
range or past the head, display names and categories without a rule, attestation key
ids, and carrier keys that are not valid Ed25519 points. Each gets its precise status
with the field named, and writes nothing."""

from __future__ import annotations

import uuid

import grpc
import pytest
from numbind.protocol import attestation, categories
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.registry import operator
from numbind.registry.errors import InvalidArgument
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    holders_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
)

from tests.e2e._story import days_ago
from tests.tokens import random_token

P = 2**255 - 19
BAD_KEYS = [
    (bytes(32), "the all-zero key"),
    (b"\x01" + bytes(31), "an invalid or small-order point"),  # the identity
    # A point of order 8 (small order).
    (
        bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        "an invalid or small-order point",
    ),
    ((P + 1).to_bytes(32, "little"), "an invalid or small-order point"),  # non-canonical y
    (bytes(31), "31 bytes"),
]


async def _status(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


async def _first_message(stub: platforms_pb2_grpc.PlatformsAsyncStub, after_seq: int) -> None:
    call = stub.StreamEvents(
        platforms_pb2.StreamEventsRequest(after_seq=after_seq, heartbeat_seconds=1)
    )
    async for _ in call:
        call.cancel()
        return


async def test_after_seq_out_of_range_and_beyond_the_head(registry: RunningRegistry) -> None:
    p1 = registry.add_platform("p1")
    async with secure_channel(p1) as channel:
        stub = platforms_pb2_grpc.PlatformsStub(channel)
        for value in (2**63, 2**64 - 1):
            code, details = await _status(_first_message(stub, value))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, details
            assert details.startswith(f"after_seq: got {value}, want 0..{2**63 - 1}")
        code, details = await _status(_first_message(stub, 5))
        assert code == grpc.StatusCode.OUT_OF_RANGE, details
        assert "after_seq: got 5, beyond the feed head 0" in details
        # At the head (here 0) the stream opens and heartbeats.
        await _first_message(stub, 0)


def _register(name: str, display_name: str, category: str) -> admin_pb2.RegisterPlatformRequest:
    return admin_pb2.RegisterPlatformRequest(
        request_id=uuid.uuid4().hex,
        platform_id=name,
        display_name=display_name,
        category=category,
        csr_pem=make_client_key_and_csr(name)[1].decode(),
    )


@pytest.mark.parametrize(
    ("display_name", "category", "words"),
    [
        ("示例\n网盘", "cloud-drive", "display_name: got '示例\\n网盘', want printable text"),
        ("evil\u202egnp.exe", "cloud-drive", "display_name: got 'evil\\u202egnp.exe'"),
        (" 示例网盘", "cloud-drive", "want no leading or trailing space"),
        ("名" * 1_000_000, "cloud-drive", "display_name: got 1000000 characters, want at most 64"),
        ("示例网盘", "<b>bank</b>", "category: got '<b>bank</b>', want one of cloud-drive"),
        ("示例网盘", "bench", "category: got 'bench', want one of"),
        ("示例网盘", "", "category: got '', want one of"),
    ],
)
async def test_display_names_and_categories_follow_one_rule(
    registry: RunningRegistry, display_name: str, category: str, words: str
) -> None:
    async with secure_channel(registry.admin_bundle) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        code, details = await _status(
            stub.RegisterPlatform(_register("acme", display_name, category))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert words in details, details
        listed = await stub.ListPrincipals(admin_pb2.ListPrincipalsRequest())
    assert "acme" not in {p.principal_id for p in listed.principals}
    # The operator's offline command applies the very same rule.
    with pytest.raises(InvalidArgument) as offline:
        operator.add_principal(
            registry.settings,
            "platform",
            "acme",
            registry.settings.data_dir / "acme",
            display_name=display_name,
            category=category,
        )
    assert words in offline.value.message


def test_every_category_has_both_labels() -> None:
    for code, label in categories.CATEGORIES.items():
        assert label.zh and label.en, code
        assert categories.label(code, "zh") == label.zh
        assert categories.label(code, "en") == label.en
    assert categories.label("not-a-code", "en") == "Other"


@pytest.mark.parametrize(("key", "got"), BAD_KEYS)
async def test_carrier_keys_must_be_valid_ed25519_points(
    registry: RunningRegistry, key: bytes, got: str
) -> None:
    registry.add_carrier("cm")
    async with secure_channel(registry.admin_bundle) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        code, details = await _status(
            stub.SetCarrierAttestationKey(
                admin_pb2.SetCarrierAttestationKeyRequest(
                    carrier_id="cm", attestation_public_key=key
                )
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(f"attestation_public_key: got {got}, want "), details
        code, details = await _status(
            stub.RegisterCarrier(
                admin_pb2.RegisterCarrierRequest(
                    request_id=uuid.uuid4().hex,
                    carrier_id="cu",
                    display_name="示例联通",
                    attestation_public_key=key,
                    csr_pem=make_client_key_and_csr("cu")[1].decode(),
                )
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(f"attestation_public_key: got {got}"), details


async def test_an_attestation_key_id_must_be_a_live_key(registry: RunningRegistry) -> None:
    cm: Bundle = registry.add_carrier("cm")
    data, sig = attestation.issue(
        cm.attestation_signing_key(),
        carrier_id="cm",
        token=random_token(),
        key_id="00000000000000ff",
        subject="sub",
        tenure_start_us=int(days_ago(30).timestamp() * 1e6),
        purpose=attestation.Purpose.QUERY,
    )
    async with secure_channel(cm) as channel:
        code, details = await _status(
            holders_pb2_grpc.HoldersStub(channel).QueryBindings(
                holders_pb2.QueryBindingsRequest(
                    attestations=[holders_pb2.SignedAttestation(attestation=data, signature=sig)]
                )
            )
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "attestations[0].key_id: 00000000000000ff is not a key of this registry" in details
