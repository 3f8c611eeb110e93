"""The hub's own part of a holder query, without storage or gRPC: a hub that holds no
bindings by design reads nothing for its part."""

from __future__ import annotations

import os
import time
from typing import Any, cast

from numbind.protocol import attestation
from numbind.registry.domain import attestation as attest
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.services.holders import Admitted, HolderService


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


class _NoSession:
    """Any statement is a failure here."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError("the hub read its store")


class _Keys:
    """A key map under which every token is already the store's."""

    def map(self, field: str, key_id: str, value: bytes) -> StoreToken:
        return StoreToken(value)


def _holders(local: bool) -> HolderService:
    return HolderService(
        cast(Any, None),
        cast(Any, None),
        cast(Any, None),
        60.0,
        attest.Policy(),
        local_bindings=local,
    )


def test_a_hub_without_bindings_reads_nothing_for_its_part_of_a_query() -> None:
    a = _admitted()
    (view,) = _holders(local=False).local_views(cast(Any, _NoSession()), None, [a])
    assert (view.token, view.key_id, view.tenure_start_us) == (
        a.attestation.token,
        a.attestation.key_id,
        a.tenure_start_us,
    )
    assert view.platforms == []


def test_a_registry_with_bindings_still_reads_them() -> None:
    a = _admitted()
    try:
        _holders(local=True).local_views(cast(Any, _NoSession()), cast(Any, _Keys()), [a])
    except AssertionError as exc:
        assert "read its store" in str(exc)
    else:
        raise AssertionError("a registry that holds bindings answered without reading them")
