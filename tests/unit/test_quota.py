"""Token-bucket quotas, without a server."""

from __future__ import annotations

import pytest
from numbind.registry.domain.quota import DAY_SECONDS, Quotas
from numbind.registry.errors import InvalidArgument, ResourceExhausted

T0 = 1_000 * DAY_SECONDS + 100.0


def test_burst_then_rate_limited_with_hint_then_refills() -> None:
    q = Quotas(rate=100.0, burst=500, daily_cap=10_000)
    q.take(1, 500, T0)
    with pytest.raises(ResourceExhausted) as err:
        q.take(1, 50, T0)
    assert err.value.retry_after == pytest.approx(0.5)
    q.take(1, 50, T0 + 0.5)  # refilled exactly enough
    q.take(2, 500, T0)  # another principal has its own bucket


def test_daily_cap_resets_at_midnight_utc() -> None:
    q = Quotas(rate=1e9, burst=1000, daily_cap=1500)
    q.take(1, 1000, T0)
    with pytest.raises(ResourceExhausted, match="daily cap") as err:
        q.take(1, 600, T0 + 1)
    assert err.value.retry_after == pytest.approx(DAY_SECONDS - 101)
    q.take(1, 600, T0 - 100 + DAY_SECONDS)


def test_refund_returns_units_and_oversize_batch_is_invalid() -> None:
    q = Quotas(rate=1.0, burst=100, daily_cap=150)
    q.take(1, 100, T0)
    q.refund(1, 100)
    q.take(1, 100, T0)
    with pytest.raises(InvalidArgument, match="at most 100"):
        q.take(1, 101, T0)


def test_restart_seeds_used_today() -> None:
    q = Quotas(rate=1e9, burst=1000, daily_cap=1000)
    assert not q.known(1)
    with pytest.raises(ResourceExhausted):
        q.take(1, 10, T0, used_today=995)
    assert q.known(1)
