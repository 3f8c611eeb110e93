"""Real mTLS handshakes: a grpc.aio server with registry CA certificates and bundle clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.registry.pki import CertificateAuthority, PrincipalId, principal_from_cert_pem
from numbind.sdk.channel import secure_channel

RPC_TIMEOUT = 10.0


class RecordingHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """The stock health service, noting which principal each Check came from."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[PrincipalId] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        pems = list(context.auth_context().get("x509_pem_cert", []))
        assert len(pems) == 1, "mTLS server must always see exactly one client certificate"
        self.peers.append(principal_from_cert_pem(pems[0]))
        return await super().Check(request, context)


@dataclass
class Registry:
    port: int
    ca: CertificateAuthority
    servicer: RecordingHealthServicer
    tmp: Path
    bundles: list[Bundle] = field(default_factory=list)

    def bundle(
        self,
        principal: PrincipalId,
        *,
        host: str = "127.0.0.1",
        issuer: CertificateAuthority | None = None,
        trust: CertificateAuthority | None = None,
    ) -> Bundle:
        """A client bundle; ``issuer`` signs the client cert, ``trust`` is its CA file."""
        role = principal.role
        if role == "registry":
            raise ValueError("registries have server certificates, not client bundles")
        key_pem, csr_pem = make_client_key_and_csr(principal.id)
        cert_pem = (issuer or self.ca).sign_csr(csr_pem, principal)
        bundle = Bundle.write(
            self.tmp / f"bundle-{len(self.bundles)}",
            registry=f"{host}:{self.port}",
            role=role,
            principal_id=principal.id,
            ca_pem=(trust or self.ca).cert_pem,
            cert_pem=cert_pem,
            key_pem=key_pem,
            attestation_seed=bytes(32) if role == "carrier" else None,
        )
        self.bundles.append(bundle)
        return bundle


async def _start_server(
    ca: CertificateAuthority, tmp: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
) -> tuple[grpc.aio.Server, Registry]:
    cert_pem, key_pem = ca.issue_server_cert(hosts)
    server = grpc.aio.server(
        options=[
            # Accept the clients' 30 s keepalive pings instead of answering GOAWAY too_many_pings.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
        ]
    )
    servicer = RecordingHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("numbind.test", health_pb2.HealthCheckResponse.SERVING)
    creds = grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    assert port > 0
    await server.start()
    return server, Registry(port=port, ca=ca, servicer=servicer, tmp=tmp)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    ca = CertificateAuthority.create(tmp_path / "ca")
    server, reg = await _start_server(ca, tmp_path)
    try:
        yield reg
    finally:
        await server.stop(grace=None)


async def _check(channel: grpc.aio.Channel, service: str = "numbind.test") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
    return int(response.status)


async def _expect_refused(channel: grpc.aio.Channel, reason: str = "") -> None:
    """The RPC fails as UNAVAILABLE; ``reason`` is looked for in the details when the client
    itself rejected the handshake (a server-side rejection only shows as a closed socket)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    assert reason.lower() in (info.value.details() or "").lower(), info.value


async def test_bundle_client_gets_serving_by_ip(registry: Registry) -> None:
    # The server cert's IP SAN 127.0.0.1 must satisfy hostname checking for an IP target.
    principal = PrincipalId("platform", "acme")
    bundle = registry.bundle(principal)
    assert bundle.registry == f"127.0.0.1:{registry.port}"
    async with secure_channel(bundle) as channel:
        assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _check(channel, "") == health_pb2.HealthCheckResponse.SERVING
    assert registry.servicer.peers == [principal, principal]


async def test_bundle_client_by_hostname_and_every_role(registry: Registry) -> None:
    principals = [
        PrincipalId("platform", "p1"),
        PrincipalId("carrier", "telco"),
        PrincipalId("admin", "ops"),
    ]
    for principal in principals:
        bundle = Bundle.load(registry.bundle(principal, host="localhost").directory)
        async with secure_channel(bundle) as channel:
            assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
    assert registry.servicer.peers == principals


async def test_sync_channel(registry: Registry) -> None:
    principal = PrincipalId("platform", "sync-client")
    bundle = registry.bundle(principal)

    def call() -> int:
        with secure_channel(bundle, aio=False) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = stub.Check(
                health_pb2.HealthCheckRequest(service="numbind.test"), timeout=RPC_TIMEOUT
            )
            return int(response.status)

    # A blocking call on the loop thread would starve the aio server running on that loop.
    assert await asyncio.to_thread(call) == health_pb2.HealthCheckResponse.SERVING
    assert registry.servicer.peers == [principal]


async def test_client_without_certificate_is_refused(registry: Registry) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=registry.ca.cert_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{registry.port}", creds) as channel:
        await _expect_refused(channel)
    assert registry.servicer.peers == []


async def test_client_with_certificate_from_another_ca_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    rogue = CertificateAuthority.create(tmp_path / "rogue-ca")
    # Trusts the real CA (so the server side of the handshake is fine), but its own
    # certificate, for a real-looking principal, comes from the rogue CA.
    bundle = registry.bundle(PrincipalId("admin", "ops"), issuer=rogue)
    async with secure_channel(bundle) as channel:
        await _expect_refused(channel)
    assert registry.servicer.peers == []


async def test_client_not_trusting_the_server_ca_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    other = CertificateAuthority.create(tmp_path / "other-ca")
    bundle = registry.bundle(PrincipalId("platform", "acme"), trust=other)
    async with secure_channel(bundle) as channel:
        await _expect_refused(channel, "CERTIFICATE_VERIFY_FAILED")
    assert registry.servicer.peers == []


async def test_server_cert_for_another_host_is_refused(tmp_path: Path) -> None:
    # Proves the client really checks the server's SANs against the target address.
    ca = CertificateAuthority.create(tmp_path / "ca")
    server, reg = await _start_server(ca, tmp_path, hosts=("registry.example",))
    try:
        async with secure_channel(reg.bundle(PrincipalId("platform", "acme"))) as channel:
            await _expect_refused(channel, "Hostname Verification")
        assert reg.servicer.peers == []
    finally:
        await server.stop(grace=None)
