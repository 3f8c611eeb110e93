"""The foundation over real gRPC with mTLS: health, auth, roles, reflection, UNIMPLEMENTED."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from numbind.registry.keys import TokenKey
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    carriers_pb2,
    carriers_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)


async def test_health_is_serving(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with secure_channel(bundle) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "numbind.v1.Tokens", "numbind.v1.Platforms"):
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_every_numbind_service(registry: RunningRegistry) -> None:
    async with secure_channel(registry.admin_bundle) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names: set[str] = set()
        async for resp in stub.ServerReflectionInfo(requests()):
            names |= {s.name for s in resp.list_services_response.service}
    assert {
        "numbind.v1.Tokens",
        "numbind.v1.Platforms",
        "numbind.v1.Carriers",
        "numbind.v1.Holders",
        "numbind.v1.Admin",
    } <= names


async def test_unregistered_principal_is_unauthenticated(registry: RunningRegistry) -> None:
    # A cert from the right CA for a principal the store does not know.
    from numbind.protocol.bundle import Bundle, make_client_key_and_csr
    from numbind.registry.pki import CertificateAuthority, PrincipalId

    ca = CertificateAuthority.load(registry.settings.pki_dir)
    key, csr = make_client_key_and_csr("ghost")
    cert = ca.sign_csr(csr, PrincipalId("platform", "ghost"))
    bundle = Bundle.write(
        registry.settings.data_dir / "ghost",
        registry=registry.address,
        role="platform",
        principal_id="ghost",
        ca_pem=ca.cert_pem,
        cert_pem=cert,
        key_pem=key,
    )
    async with secure_channel(bundle) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "ghost" in (err.value.details() or "")


async def test_suspended_principal_is_unauthenticated(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with secure_channel(bundle) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        await stub.GetKeys(tokens_pb2.GetKeysRequest())
        async with secure_channel(registry.admin_bundle) as admin_channel:
            await admin_pb2_grpc.AdminStub(admin_channel).SetPrincipalSuspended(
                admin_pb2.SetPrincipalSuspendedRequest(
                    request_id="s1",
                    role=admin_pb2.PRINCIPAL_ROLE_PLATFORM,
                    principal_id="acme",
                    suspended=True,
                )
            )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetKeys(tokens_pb2.GetKeysRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_platform_calling_carrier_or_admin_rpc_is_denied(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with secure_channel(bundle) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await carriers_pb2_grpc.CarriersStub(channel).ReportLifecycle(
                carriers_pb2.ReportLifecycleRequest(request_id="r1")
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin_pb2_grpc.AdminStub(channel).GetStats(admin_pb2.GetStatsRequest())
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_admin_stats_and_key_rotation(registry: RunningRegistry) -> None:
    registry.add_platform("acme")
    async with secure_channel(registry.admin_bundle) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        stats = await admin.GetStats(admin_pb2.GetStatsRequest())
        assert stats.platforms == 1
        first = await admin.RotateKey(admin_pb2.RotateKeyRequest(request_id="rot-1"))
        again = await admin.RotateKey(admin_pb2.RotateKeyRequest(request_id="rot-1"))
        assert first.key.key_id == again.key.key_id  # a retry does not rotate twice
        keys = await admin.ListKeys(admin_pb2.ListKeysRequest())
        assert [k.state for k in keys.keys].count(tokens_pb2.KEY_STATE_ACTIVE) == 1
        assert len(keys.keys) == 2


async def test_real_registry_refuses_handshake_without_or_with_foreign_cert(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    """Against the real server: the TLS layer refuses before any interceptor or servicer."""
    from numbind.protocol.bundle import Bundle, make_client_key_and_csr
    from numbind.registry.pki import CertificateAuthority, PrincipalId

    ca_pem = registry.admin_bundle.ca_pem
    calls: list[int] = []
    original = registry.registry.tokens.keys

    def spy() -> Coroutine[Any, Any, tuple[str, list[TokenKey]]]:
        calls.append(1)
        return original()

    registry.registry.tokens.keys = spy  # type: ignore[method-assign]
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    other = CertificateAuthority.create(tmp_path / "other-ca")
    key, csr = make_client_key_and_csr("acme")
    foreign = Bundle.write(
        tmp_path / "foreign",
        registry=registry.address,
        role="platform",
        principal_id="acme",
        ca_pem=ca_pem,
        cert_pem=other.sign_csr(csr, PrincipalId("platform", "acme")),
        key_pem=key,
    )
    registry.add_platform("acme")  # the principal exists; only its certificate is foreign
    for creds in (no_cert, foreign.channel_credentials()):
        async with grpc.aio.secure_channel(registry.address, creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await tokens_pb2_grpc.TokensStub(channel).GetKeys(
                    tokens_pb2.GetKeysRequest(), timeout=5
                )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert calls == []
    async with secure_channel(registry.add_platform("beta")) as channel:
        await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
    assert calls == [1]
