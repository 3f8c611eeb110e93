"""Settings.attestation_max_lifetime_seconds and Settings.clock_skew_seconds change what the
registry accepts, over real gRPC; the skew also sets how long a used nonce is kept."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.registry.storage.models import AttestationNonceRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.v1 import holders_pb2, holders_pb2_grpc
from sqlalchemy import select

from tests.e2e._story import carrier, days_ago, tokenize

PHONE = "+8613800138000"
US = 1_000_000


async def _serving(reg: RunningRegistry) -> tuple[Bundle, bytes, str]:
    """A carrier that serves PHONE; returns its bundle and the number's token and key id."""
    cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
    token = await tokenize(p1, PHONE)
    async with carrier(cm) as client:
        await client.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
    return cm, token.token, token.key_id


async def _query(
    bundle: Bundle, token: bytes, key_id: str, *, lifetime: int, issued_in: float = 0
) -> tuple[grpc.StatusCode, str, bytes]:
    """Query with an attestation of `lifetime` seconds issued `issued_in` seconds from now."""
    nonce = os.urandom(32)
    data, sig = attestation.issue(
        bundle.attestation_signing_key(),
        carrier_id=bundle.principal_id,
        token=token,
        key_id=key_id,
        subject="sub",
        tenure_start_us=int(days_ago(30).timestamp() * US),
        purpose=attestation.Purpose.QUERY,
        lifetime_seconds=lifetime,
        now_us=time.time_ns() // 1000 + int(issued_in * US),
        nonce=nonce,
    )
    request = holders_pb2.QueryBindingsRequest(
        attestations=[holders_pb2.SignedAttestation(attestation=data, signature=sig)]
    )
    async with secure_channel(bundle) as channel:
        try:
            await holders_pb2_grpc.HoldersStub(channel).QueryBindings(request)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or "", nonce
    return grpc.StatusCode.OK, "", nonce


@pytest.mark.parametrize("limit", [None, 120])
async def test_max_lifetime_setting_refuses_longer_attestations(
    tmp_path: Path, limit: int | None
) -> None:
    # Settings fields, passed through running_registry's **overrides.
    overrides: dict[str, Any] = {} if limit is None else {"attestation_max_lifetime_seconds": limit}
    async with running_registry(tmp_path / "data", **overrides) as reg:
        cm, token, key_id = await _serving(reg)
        short, _, _ = await _query(cm, token, key_id, lifetime=100)
        code, details, _ = await _query(cm, token, key_id, lifetime=300)
    assert short == grpc.StatusCode.OK
    if limit is None:
        assert code == grpc.StatusCode.OK
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "got 300 s, want more than 0 and at most 120 s" in details


@pytest.mark.parametrize("skew", [60, 0])
async def test_clock_skew_setting_decides_on_attestations_from_a_fast_clock(
    tmp_path: Path, skew: int
) -> None:
    async with running_registry(tmp_path / "data", clock_skew_seconds=skew) as reg:
        cm, token, key_id = await _serving(reg)
        # The carrier's clock runs 30 s ahead of the registry's.
        code, details, _ = await _query(cm, token, key_id, lifetime=300, issued_in=30)
    if skew == 60:
        assert code == grpc.StatusCode.OK
    else:
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "by more than 0 s of clock skew" in details


@pytest.mark.parametrize("skew", [0, 5, 60])
async def test_nonces_are_kept_as_long_as_the_skew_lets_their_attestation_pass(
    tmp_path: Path, skew: int
) -> None:
    async with running_registry(tmp_path / "data", clock_skew_seconds=skew) as reg:
        cm, token, key_id = await _serving(reg)
        before = time.time_ns() // 1000
        code, _, nonce = await _query(cm, token, key_id, lifetime=200)
        after = time.time_ns() // 1000
        assert code == grpc.StatusCode.OK
        rows = reg.registry.db.transact(
            lambda s: list(
                s.scalars(
                    select(AttestationNonceRow.expires_us).where(AttestationNonceRow.nonce == nonce)
                )
            ),
            write=False,
        )
    # issued_at was taken between `before` and `after`; expiry is 200 s later, plus skew.
    (kept_until,) = rows
    assert before + (200 + skew) * US <= kept_until <= after + (200 + skew) * US
