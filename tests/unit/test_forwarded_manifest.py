"""A member's forwarded tokenisation follows the installed manifest: read and verified once
per version, not per call, and waited for (a look at the file now and then) when the token
service answers under a key the manifest does not list yet."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import pytest
from numbind.protocol.manifest_model import TokenPublicKey, TokenService
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.federation import forward, hub
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.forward import ForwardedTokens


def _federation(tmp_path: Path) -> FederationDir:
    settings = Settings(data_dir=tmp_path / "hub", listen="127.0.0.1:7443")
    operator.init(settings, registry_address="127.0.0.1:7443")
    hub.init(settings, "fed", address="127.0.0.1:7443")
    return FederationDir(settings.data_dir)


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    loads: list[int] = []
    load = FederationDir.load

    def counting(self: FederationDir) -> Installed | None:
        loads.append(1)
        return load(self)

    monkeypatch.setattr(FederationDir, "load", counting)
    return loads


def _forwarded(files: FederationDir) -> ForwardedTokens:
    return ForwardedTokens(files, cast(Any, None), "hub", cast(Any, None))


def test_the_manifest_is_read_once_per_version_not_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _federation(tmp_path)
    loads = _count_loads(monkeypatch)
    tokens = _forwarded(files)
    first = [tokens._manifest_keys() for _ in range(20)]
    assert len(loads) == 1 and len({id(p) for p in first}) == 1


async def test_a_key_not_listed_yet_waits_for_the_manifest_that_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _federation(tmp_path)
    monkeypatch.setattr(forward, "MANIFEST_WAIT_SECONDS", 5.0)
    tokens = _forwarded(files)
    held = tokens._manifest_keys()
    new = TokenPublicKey("f" * 16, held.keys[0].public_key)
    loads = _count_loads(monkeypatch)
    waiting = asyncio.ensure_future(tokens._listing(new.key_id))
    await asyncio.sleep(0.6)
    assert not waiting.done()
    # Waiting looks at the file's time, and reads nothing until it moves.
    assert loads == []
    hub.follow_token_keys(files, TokenService(held.address, held.active_key_id, (*held.keys, new)))
    st = files.manifest_path.stat()
    os.utime(files.manifest_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    loads.clear()  # signing it read the manifest too
    listing = await asyncio.wait_for(waiting, 2.0)
    assert listing.key(new.key_id) == new
    assert len(loads) == 1
