"""Published bindings across a token key rotation, over real gRPC with mTLS, on every
storage backend: kept and re-keyed, and refused under the key once it is retired."""

from __future__ import annotations

import grpc
import pytest
from numbind.registry.storage.models import KeyDeltaRow
from numbind.registry.testing import RunningRegistry
from numbind.v1 import common_pb2
from sqlalchemy import select

from tests.e2e._bindings import (
    US,
    Pub,
    Wd,
    connect,
    digest,
    expected,
    key_of,
    make,
    refusal,
)
from tests.e2e._rekey import rekeyed, retire, rotate, wait_rekeyed


async def test_rotation_keeps_bindings_and_a_retired_key_is_refused(
    registry_any_store: RunningRegistry,
) -> None:
    reg = registry_any_store
    async with connect(reg, "acme") as acme:
        old = [make(acme.key_id) for _ in range(3)]
        await acme.stub.PublishBindings(Pub(request_id="old", bindings=old))
        new_key = (await rotate(reg)).key
        # Rotated out but not retired: still live, and mapped to the store key, so the
        # same bindings are the same bindings (nothing inserted, nothing changed).
        resp = await acme.stub.PublishBindings(Pub(request_id="still", bindings=old))
        assert (resp.inserted, resp.updated, resp.unchanged) == (0, 0, 3)
        await wait_rekeyed(reg)
        moved = [
            make(
                new_key.key_id,
                rekeyed(reg, acme.key_id, new_key.key_id, b.token.value),
                b.account_ref,
                _us(b),
            )
            for b in old
        ]
        assert await digest(acme, 2, new_key.key_id) == expected(moved, 2)
        assert await digest(acme, 2) == expected(moved, 2)
        assert _delta_of(reg, acme.key_id) is not None
        await retire(reg, acme.key_id)
        # Retiring forgets the delta: its tokens can no longer be mapped, and a later leak
        # of the retired key does not yield the active one.
        assert _delta_of(reg, acme.key_id) is None
        details = await refusal(
            lambda: acme.stub.PublishBindings(Pub(request_id="after", bindings=[make(acme.key_id)]))
        )
        assert f"bindings[0].token.key_id: {acme.key_id} is retired" in details
        # Reconciliation answers in the store key only, naming it.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await digest(acme, 2, acme.key_id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert dict(err.value.trailing_metadata() or ())["store-key-id"] == new_key.key_id
        # What was published under the retired key is withdrawn under the new one.
        resp2 = await acme.stub.WithdrawBindings(
            Wd(request_id="w", bindings=[key_of(b) for b in moved])
        )
        assert resp2.withdrawn == 3


def _delta_of(reg: RunningRegistry, key_id: str) -> bytes | None:
    return reg.registry.db.transact(
        lambda s: s.scalar(select(KeyDeltaRow.delta).where(KeyDeltaRow.key_id == key_id)),
        write=False,
    )


def _us(b: common_pb2.Binding) -> int:
    return b.bound_at.seconds * US + b.bound_at.nanos // 1000
