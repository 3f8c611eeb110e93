"""Three registries on loopback joined through `numbind federation` files, served for real.

The hub (lifecycle authority and token service, no bindings) and two members, bank and
net; net may keep its store on PostgreSQL. Addresses are free loopback ports picked
before the manifest is signed, since the manifest names them.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numbind.registry.api.server import RegistryServer
from numbind.registry.app import Registry
from numbind.registry.config import Settings

from tests.e2e._federation import fed, ok

MEMBERS = ("bank", "net")


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@dataclass
class Three:
    root: Path
    addresses: dict[str, str]
    database_urls: dict[str, str | None]
    servers: dict[str, RegistryServer] = field(default_factory=dict)

    def dir(self, name: str) -> Path:
        return self.root / name

    def settings(self, name: str, **overrides: Any) -> Settings:
        return Settings(
            data_dir=self.dir(name),
            listen=self.addresses[name],
            database_url=self.database_urls.get(name),
            **overrides,
        )

    def registry(self, name: str) -> Registry:
        return self.servers[name].registry

    async def start(self, name: str, **overrides: Any) -> RegistryServer:
        server = RegistryServer(Registry.open(self.settings(name, **overrides)))
        await server.start()
        self.servers[name] = server
        return server

    async def stop(self, name: str) -> None:
        server = self.servers.pop(name)
        await server.stop()

    async def stop_all(self) -> None:
        for name in list(self.servers):
            await self.stop(name)


def make_three(root: Path, *, net_database_url: str | None = None) -> Three:
    """Data dirs for hub, bank and net (admin init), federation `demo` joined by files."""
    three = Three(
        root,
        {name: free_address() for name in ("hub", *MEMBERS)},
        {"hub": None, "bank": None, "net": net_database_url},
    )
    for name in ("hub", *MEMBERS):
        url = three.database_urls[name]
        extra = ["--database-url", url] if url else []
        ok("admin", "init", "--data-dir", three.dir(name), *extra)
    fed("init", three.dir("hub"), "--id", "demo", "--address", three.addresses["hub"])
    for name in MEMBERS:
        req, grant = root / f"{name}.req", root / f"{name}.grant"
        fed(
            "request",
            three.dir(name),
            "--id",
            name,
            "--address",
            three.addresses[name],
            "--out",
            req,
        )
        fed("add-member", three.dir("hub"), req, "--out", grant)
        fed("accept", three.dir(name), grant)
    return three


@asynccontextmanager
async def running(three: Three, *names: str, **overrides: Any) -> AsyncIterator[Three]:
    try:
        for name in names or ("hub", *MEMBERS):
            await three.start(name, **overrides)
        yield three
    finally:
        await three.stop_all()
