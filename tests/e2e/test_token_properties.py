"""Properties of tokens for random numbers, through a real registry and the real SDK:
- a token is k*HashToGroup(E.164), computed here independently of the SDK's blind /
  verify / unblind path, from the key file's scalar with libsodium directly (HashToGroup
  itself is pinned by the RFC 9497 vectors, whose blinded elements are r*HashToGroup(x));
- every platform gets the same token for the same number;
- after a rotation, the tokens the store re-keyed are the tokens the SDK now computes
  under the new key.
Hypothesis drives plain functions, so the registry runs on its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import rbcl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.registry.storage.models import BindingRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk.channel import secure_channel
from numbind.sdk.model import Row
from numbind.sdk.platform import PlatformClient
from numbind.sdk.tokenizer import Tokenizer
from sqlalchemy import select

from tests.e2e._rekey import rotate, secret, wait_rekeyed
from tests.e2e._story import days_ago

pytestmark = pytest.mark.slow
T = TypeVar("T")

_CN_MOBILE = ["130", "133", "135", "138", "139", "150", "152", "158", "177", "186", "189"]
numbers = st.one_of(
    st.builds(
        lambda p, n: f"+86{p}{n:08d}", st.sampled_from(_CN_MOBILE), st.integers(0, 99_999_999)
    ),
    st.builds(lambda n: f"+44207946{n:04d}", st.integers(0, 999)),
    st.builds(lambda n: f"+1650253{n:04d}", st.integers(0, 9999)),
)
phone_lists = st.lists(numbers, min_size=1, max_size=10, unique=True)


class Background:
    """A running registry on an event loop in its own thread."""

    def __init__(self, data: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._cm = running_registry(data)
        self.reg: RunningRegistry = self.run(self._cm.__aenter__())
        self.p1 = self.reg.add_platform("p1")
        self.p2 = self.reg.add_platform("p2")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.run(self._cm.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def bg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    b = Background(tmp_path_factory.mktemp("props") / "data")
    yield b
    b.close()


async def _tokens(bundle: Bundle, phones: list[str]) -> list[tuple[str, bytes, str]]:
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel, batch_size=3)  # several batches, pipelined
        try:
            return [(r.e164, r.token, r.key_id) for r in await tok.tokenize(phones)]
        finally:
            tok.close()


def _k_times_h(sk: bytes, e164: str) -> bytes:
    point: bytes = rbcl.crypto_scalarmult_ristretto255(
        sk, voprf.hash_to_group(e164.encode(), voprf.MODE_VOPRF)
    )
    return point


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(phones=phone_lists)
def test_sdk_tokens_are_k_times_hash_to_group_for_every_platform(
    bg: Background, phones: list[str]
) -> None:
    a = bg.run(_tokens(bg.p1, phones))
    b = bg.run(_tokens(bg.p2, list(reversed(phones))))
    assert [t for _, t, _ in a] == [t for _, t, _ in reversed(b)]
    (key_id,) = {k for _, _, k in a}
    sk = secret(bg.reg, key_id)
    assert [t for _, t, _ in a] == [_k_times_h(sk, e164) for e164, _, _ in a]


async def _publish_rotate_and_read(bg: Background, phones: list[str]) -> dict[str, bytes]:
    async with PlatformClient(bg.p1) as client:
        rows = [Row(p, f"acct-{p}", days_ago(5)) for p in phones]
        await client.publish(rows)
        refs = {client.account_ref(f"acct-{p}"): p for p in phones}
    await rotate(bg.reg)
    await wait_rekeyed(bg.reg)
    stored = bg.reg.registry.db.transact(
        lambda s: list(
            s.execute(
                select(BindingRow.account_ref, BindingRow.token, BindingRow.key_id).where(
                    BindingRow.account_ref.in_(list(refs))
                )
            )
        ),
        write=False,
    )
    active = bg.reg.registry.keys.active().key_id
    assert {k for _, _, k in stored} == {active}
    return {refs[ref]: token for ref, token, _ in stored}


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(phones=phone_lists)
def test_rekeyed_store_tokens_are_fresh_tokens_under_the_new_key(
    bg: Background, phones: list[str]
) -> None:
    stored = bg.run(_publish_rotate_and_read(bg, phones))
    fresh = bg.run(_tokens(bg.p2, phones))
    assert {bg.reg.registry.keys.active().key_id} == {k for _, _, k in fresh}
    by_e164 = {e164: token for e164, token, _ in fresh}
    # Row normalises numbers the way the Tokenizer does: map both by E.164.
    assert {p: stored[p] for p in stored} == {p: by_e164[p] for p in stored}
    assert len(stored) == len(phones)
