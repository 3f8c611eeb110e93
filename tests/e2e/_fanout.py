"""A federation of three on loopback for the fan-out tests: the hub (lifecycle authority,
token service, carriers) and two binding registries (platforms), joined with the real
`numbind federation init/request/add-member/accept` files.

Members hold no token key: their platforms' tokenisation is forwarded to the hub's token
service, so a token means the same number everywhere. Peers authenticate with their real
registry certificates under the manifest's CAs.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.api.server import RegistryServer
from numbind.registry.app import Registry
from numbind.registry.config import Settings
from numbind.registry.domain.types import Role
from numbind.registry.federation.files import FederationDir

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


def peer_credentials_of(caller: Settings, callee: Settings) -> grpc.ChannelCredentials:
    """`caller`'s peer certificate (spiffe://numbind/registry/<id>), trusting `callee`'s CA."""
    files = FederationDir(caller.data_dir)
    return grpc.ssl_channel_credentials(
        (callee.pki_dir / "ca.pem").read_bytes(),
        files.peer_key_path.read_bytes(),
        files.peer_cert_path.read_bytes(),
    )


@dataclass
class Federation:
    root: Path
    hub: Node
    members: dict[str, Node]

    @property
    def nodes(self) -> list[Node]:
        return [self.hub, *self.members.values()]

    async def start(self, node: Node) -> None:
        assert node.server is None
        server = RegistryServer(Registry.open(node.settings))
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
    for node in members.values():
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

    federation = Federation(root, hub, members)
    try:
        for node in [*members.values(), hub]:
            await federation.start(node)
        yield federation
    finally:
        for node in federation.nodes:
            await federation.stop(node)
