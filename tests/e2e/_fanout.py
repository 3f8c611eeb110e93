"""A federation of three on loopback for the fan-out tests: the hub (lifecycle authority,
token service, carriers) and two binding registries (platforms), joined with the real
`numbind federation init/request/add-member/accept` files.

Tokens must mean the same number at every registry. Until members forward tokenisation to
the hub's token service (issue 11, item 3), each member is given the hub's token key
before its first start, so its platforms' tokens are the hub's.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from numbind.protocol.bundle import Bundle
from numbind.protocol.manifest import Member
from numbind.registry import operator
from numbind.registry.api.server import RegistryServer
from numbind.registry.app import Registry
from numbind.registry.config import Settings
from numbind.registry.domain.types import Role, now_us
from numbind.registry.federation.fanout_client import ChannelFactory
from numbind.registry.keys import KeyRing
from numbind.registry.pki import CertificateAuthority, PrincipalId
from numbind.registry.storage import migrate, principals, token_keys
from numbind.registry.storage.db import Database

from tests.e2e._federation import fed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One registry of the federation; `server` is None while it is down."""

    member_id: str
    name: str
    settings: Settings
    server: RegistryServer | None = None
    bundles: dict[str, Bundle] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.settings.listen

    @property
    def registry(self) -> Registry:
        assert self.server is not None
        return self.server.registry

    def add(self, role: str, name: str, display_name: str = "", category: str = "other") -> Bundle:
        bundle = operator.add_principal(
            self.settings,
            role,
            name,
            self.settings.data_dir / "bundles" / f"{role}-{name}",
            display_name=display_name or name,
            category=category if role == Role.PLATFORM else "",
            registry_address=self.address,
        )
        if self.server is not None:
            self.registry.directory.invalidate()
        self.bundles[name] = bundle
        return bundle


def _share_token_key(hub: Settings, member: Settings) -> None:
    """Give a fresh member store the hub's active token key (public row, secret file)."""
    hub_db = Database(hub.effective_database_url)
    try:
        ring = KeyRing(hub_db, hub.keys_dir)
        ring.reload()
        key = ring.active()
    finally:
        hub_db.close()
    member.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copy2(hub.keys_dir / f"{key.key_id}.key", member.keys_dir / f"{key.key_id}.key")
    db = Database(member.effective_database_url)
    try:
        migrate.upgrade(db.write_engine)
        db.transact(lambda s: token_keys.activate(s, key.key_id, key.public_key, now_us()))
    finally:
        db.close()


def hub_identity_at(member: Settings, registry_id: str) -> tuple[bytes, bytes, bytes]:
    """The hub as a `registry` principal of the member, under the member's CA: (CA pem,
    certificate pem, key pem). Stands in for peer mTLS under the manifest's CAs until
    that lands; the member's auth then sees spiffe://numbind/registry/<hub>."""
    ca = CertificateAuthority.load(member.pki_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue_client_cert(PrincipalId("registry", registry_id), key.public_key())  # type: ignore[arg-type]
    db = Database(member.effective_database_url)
    try:
        db.transact(
            lambda s: principals.register(s, Role.REGISTRY, registry_id, display_name=registry_id)
        )
    finally:
        db.close()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca.cert_pem, cert, key_pem


@dataclass
class Federation:
    root: Path
    hub: Node
    members: dict[str, Node]
    channel_factory: ChannelFactory
    overrides: dict[str, Any]

    @property
    def nodes(self) -> list[Node]:
        return [self.hub, *self.members.values()]

    async def start(self, node: Node) -> None:
        assert node.server is None
        factory = self.channel_factory if node is self.hub else None
        server = RegistryServer(Registry.open(node.settings, channel_factory=factory))
        await server.start()
        node.server = server

    async def stop(self, node: Node) -> None:
        if node.server is not None:
            server, node.server = node.server, None
            await server.stop()


@asynccontextmanager
async def federation_of_three(
    root: Path,
    *,
    member_database_urls: dict[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[Federation]:
    """hub + members `net` (示例互联网平台登记) and `bank` (示例金融平台登记), all up."""
    urls = member_database_urls or {}

    def settings(name: str) -> Settings:
        return Settings(
            data_dir=root / name,
            listen=f"127.0.0.1:{free_port()}",
            database_url=urls.get(name),
            **overrides,
        )

    hub = Node("hub", "示例码号平台", settings("hub"))
    members = {
        "net": Node("net", "示例互联网平台登记", settings("net")),
        "bank": Node("bank", "示例金融平台登记", settings("bank")),
    }
    operator.init(hub.settings, registry_address=hub.address)
    fed("init", hub.settings.data_dir, "--id", "demo", "--name", hub.name, "--address", hub.address)
    peers: dict[str, tuple[bytes, bytes, bytes]] = {}
    for node in members.values():
        _share_token_key(hub.settings, node.settings)
        operator.init(node.settings, registry_address=node.address)
        req = root / f"{node.member_id}.req"
        grant = root / f"{node.member_id}.grant"
        data_dir = node.settings.data_dir
        fed(
            "request",
            data_dir,
            *("--id", node.member_id, "--name", node.name),
            *("--address", node.address, "--out", req),
        )
        fed("add-member", hub.settings.data_dir, req, "--out", grant)
        fed("accept", data_dir, grant)
        peers[node.member_id] = hub_identity_at(node.settings, hub.member_id)

    def channel_for(member: Member) -> grpc.aio.Channel:
        ca, cert, key = peers[member.id]
        creds = grpc.ssl_channel_credentials(ca, key, cert)
        return grpc.aio.secure_channel(member.address, creds)

    federation = Federation(root, hub, members, channel_for, overrides)
    try:
        for node in [*members.values(), hub]:
            await federation.start(node)
        yield federation
    finally:
        for node in federation.nodes:
            await federation.stop(node)
