"""Start a real registry in-process on a loopback port, for tests (ours and platforms').

async with running_registry(tmp_path) as reg:
    bundle = reg.add_platform("acme")
    async with secure_channel(bundle) as channel: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.api.server import RegistryServer
from numbind.registry.app import Registry
from numbind.registry.config import Settings


@dataclass
class RunningRegistry:
    settings: Settings
    server: RegistryServer
    port: int

    @property
    def registry(self) -> Registry:
        return self.server.registry

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_bundle(self) -> Bundle:
        return Bundle.load(self.settings.data_dir / operator.ADMIN_BUNDLE)

    def _add(self, role: str, name: str, display_name: str, category: str) -> Bundle:
        out = self.settings.data_dir / "bundles" / f"{role}-{name}"
        bundle = operator.add_principal(
            self.settings,
            role,
            name,
            out,
            display_name=display_name or name,
            category=category,
            registry_address=self.address,
        )
        self.registry.directory.invalidate()
        return bundle

    def add_platform(self, name: str, display_name: str = "", category: str = "other") -> Bundle:
        return self._add("platform", name, display_name, category)

    def add_carrier(self, name: str, display_name: str = "") -> Bundle:
        return self._add("carrier", name, display_name, "")

    def suspend(self, role: str, name: str) -> None:
        operator.set_suspended(self.settings, role, name, True)
        self.registry.directory.invalidate()


@asynccontextmanager
async def running_registry(
    data_dir: Path, *, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[RunningRegistry]:
    settings = Settings(
        data_dir=data_dir, listen="127.0.0.1:0", database_url=database_url, **overrides
    )
    # The real port is known only after start; the admin bundle is rewritten with it.
    operator.init(settings, registry_address="127.0.0.1:1")
    server = RegistryServer(Registry.open(settings))
    port = await server.start()
    admin = Bundle.load(settings.data_dir / operator.ADMIN_BUNDLE)
    Bundle.write(
        admin.directory,
        registry=f"127.0.0.1:{port}",
        role="admin",
        principal_id="admin",
        ca_pem=admin.ca_pem,
        cert_pem=admin.cert_pem,
        key_pem=admin.key_pem,
    )
    try:
        yield RunningRegistry(settings, server, port)
    finally:
        await server.stop()
