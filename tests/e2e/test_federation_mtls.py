"""Peers over real mTLS on loopback: a grpc.aio server whose client roots are its own CA plus
the installed manifest's CAs, and registries joined through `numbind federation` files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from numbind.protocol.bundle import Bundle
from numbind.protocol.manifest import Member, PeerRefused
from numbind.registry.federation import (
    CallerTrust,
    FederationDir,
    PeerTrust,
    peer_channel_credentials,
)
from numbind.registry.pki import CertificateAuthority, PrincipalId

from tests.e2e._federation import Dirs, fed, join, ok

RPC_TIMEOUT = 10.0


class PeerHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """Health, noting who each call came from: a member's id, or a local principal's URI.

    The caller is identified under the manifest installed at the time of the call."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.peers: list[str] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        callers = CallerTrust(
            (self.data_dir / "pki" / "ca.pem").read_bytes(), PeerTrust.load(self.data_dir)
        )
        try:
            caller = callers.identify_auth_context(context.auth_context())
        except PeerRefused as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        self.peers.append(caller.id if isinstance(caller, Member) else caller.uri)
        return await super().Check(request, context)


@asynccontextmanager
async def hub_server(data_dir: Path) -> AsyncIterator[tuple[int, PeerHealthServicer]]:
    """The hub's TLS server: its server certificate, client roots = own CA + manifest CAs."""
    pki = data_dir / "pki"
    trust = PeerTrust.load(data_dir)
    assert trust is not None
    roots = trust.server_root_certificates((pki / "ca.pem").read_bytes())
    creds = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=roots,
        require_client_auth=True,
    )
    server = grpc.aio.server()
    servicer = PeerHealthServicer(data_dir)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("numbind.federation", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        yield port, servicer
    finally:
        await server.stop(grace=None)


async def check(port: int, creds: grpc.ChannelCredentials) -> int:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(
            health_pb2.HealthCheckRequest(service="numbind.federation"), timeout=RPC_TIMEOUT
        )
        return int(response.status)


async def expect_failure(port: int, creds: grpc.ChannelCredentials) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await check(port, creds)
    return info.value


def member_credentials(data_dir: Path) -> grpc.ChannelCredentials:
    files = FederationDir(data_dir)
    return peer_channel_credentials(files.require(), files)


def forged_credentials(
    issuer_dir: Path, claimed: str, trust_dir: Path, role: str = "registry"
) -> grpc.ChannelCredentials:
    """The identity `role`/`claimed`, issued by the CA in `issuer_dir`, trusting the CA in
    `trust_dir` for the server."""
    ca = CertificateAuthority.load(issuer_dir / "pki")
    key = ec.generate_private_key(ec.SECP256R1())
    principal = PrincipalId(role, claimed)  # type: ignore[arg-type]
    cert = ca.issue_client_cert(principal, key.public_key())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return grpc.ssl_channel_credentials(
        root_certificates=(trust_dir / "pki" / "ca.pem").read_bytes(),
        private_key=key_pem,
        certificate_chain=cert,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Dirs:
    dirs = Dirs.create(tmp_path_factory.mktemp("pristine"))
    ok("admin", "init", "--data-dir", dirs.root / "rogue")
    return dirs


@pytest.fixture
def dirs(pristine: Dirs, tmp_path: Path) -> Dirs:
    copied = pristine.copy(tmp_path)
    join(copied, members=("bank", "net"))
    return copied


async def test_members_reach_the_hub_as_their_registry_identity(dirs: Dirs) -> None:
    async with hub_server(dirs.hub) as (port, servicer):
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await check(port, member_credentials(dirs.bank)) == serving
        assert await check(port, member_credentials(dirs.net)) == serving
        assert await check(port, member_credentials(dirs.hub)) == serving
        assert servicer.peers == ["bank", "net", "hub"]


async def test_a_ca_outside_the_manifest_is_refused_at_the_handshake(
    dirs: Dirs, pristine: Dirs
) -> None:
    rogue = pristine.root / "rogue"
    async with hub_server(dirs.hub) as (port, servicer):
        # A real-looking member identity, trusting the hub's CA, from a CA not in the manifest.
        error = await expect_failure(port, forged_credentials(rogue, "bank", dirs.hub))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        assert servicer.peers == []


async def test_a_member_ca_claiming_another_member_is_refused(dirs: Dirs) -> None:
    async with hub_server(dirs.hub) as (port, servicer):
        # bank's CA is a root the handshake accepts, but it may only name bank.
        error = await expect_failure(port, forged_credentials(dirs.bank, "net", dirs.hub))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        assert "does not verify under member net's CA" in (error.details() or "")
        assert servicer.peers == []


async def test_a_member_ca_cannot_mint_local_principals(dirs: Dirs) -> None:
    async with hub_server(dirs.hub) as (port, servicer):
        # The hub's own admin bundle is an admin here...
        admin = Bundle.load(dirs.hub / "admin-bundle")
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await check(port, admin.channel_credentials()) == serving
        # ...but an admin certificate from bank's CA, a root the handshake accepts, is not.
        forged = forged_credentials(dirs.bank, "admin", dirs.hub, role="admin")
        error = await expect_failure(port, forged)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        assert "does not verify under this registry's own CA" in (error.details() or "")
        assert servicer.peers == ["spiffe://numbind/admin/admin"]


async def test_a_removed_member_is_refused(dirs: Dirs) -> None:
    net = member_credentials(dirs.net)
    async with hub_server(dirs.hub) as (port, servicer):
        fed("remove-member", dirs.hub, "net")
        # Still a root of the running server's TLS config, but no longer a member.
        error = await expect_failure(port, net)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        assert "registry/net is not a member of federation demo" in (error.details() or "")
    # A server started from the new manifest drops net's CA from its roots.
    async with hub_server(dirs.hub) as (port, servicer):
        error = await expect_failure(port, net)
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await check(port, member_credentials(dirs.bank)) == serving
        assert servicer.peers == ["bank"]


async def test_a_member_refuses_a_server_outside_the_manifest(dirs: Dirs, pristine: Dirs) -> None:
    # bank dials what claims to be the hub but is the rogue registry's server.
    async with _plain_server(pristine.root / "rogue") as port:
        error = await expect_failure(port, member_credentials(dirs.bank))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        assert "CERTIFICATE_VERIFY_FAILED" in (error.details() or "").upper().replace(" ", "_")


@asynccontextmanager
async def _plain_server(data_dir: Path) -> AsyncIterator[int]:
    pki = data_dir / "pki"
    creds = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())]
    )
    server = grpc.aio.server()
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)
