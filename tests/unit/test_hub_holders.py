"""The hub's own part of a holder query, without storage or gRPC: a hub that holds no
bindings by design answers its part without opening a transaction."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, cast

from numbind.protocol import attestation
from numbind.registry.domain import attestation as attest
from numbind.registry.services.holders import Admitted, HolderService


class _NoStore:
    """Any unit of work is a failure here."""

    async def act(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("the hub read its store")


def _admitted() -> Admitted:
    now = int(time.time() * 1e6)
    att = attestation.Attestation(
        carrier_id="cm",
        token=os.urandom(32),
        key_id="0123456789abcdef",
        subject="sub",
        tenure_start_us=now - 1_000_000,
        purpose=attestation.Purpose.QUERY,
        nonce=os.urandom(32),
        issued_at_us=now,
        expires_at_us=now + 60_000_000,
    )
    return Admitted(att, now - 2_000_000)


def _holders(local: bool) -> HolderService:
    return HolderService(
        cast(Any, None),
        cast(Any, _NoStore()),
        cast(Any, None),
        60.0,
        attest.Policy(),
        local_bindings=local,
    )


def test_a_hub_without_bindings_reads_nothing_for_its_part_of_a_query() -> None:
    a = _admitted()
    (view,) = asyncio.run(_holders(local=False).local_views([a]))
    assert (view.token, view.key_id, view.tenure_start_us) == (
        a.attestation.token,
        a.attestation.key_id,
        a.tenure_start_us,
    )
    assert view.platforms == []


def test_a_registry_with_bindings_still_reads_them() -> None:
    try:
        asyncio.run(_holders(local=True).local_views([_admitted()]))
    except AssertionError as exc:
        assert "read its store" in str(exc)
    else:
        raise AssertionError("a registry that holds bindings answered without reading them")
