"""Quota policy, without a server: what may be asked for and what a refusal says.

The bucket arithmetic runs in the store; tests/storage/test_quota_store.py covers it on
every backend, and across concurrent takers on PostgreSQL."""

from __future__ import annotations

import pytest
from numbind.registry.domain.quota import DAY_SECONDS, Quotas
from numbind.registry.errors import InvalidArgument

T0 = 1_000 * DAY_SECONDS + 100.0


def test_oversize_batch_is_invalid_not_exhausted() -> None:
    q = Quotas(rate=1.0, burst=100, daily_cap=150)
    q.check_batch(100)
    with pytest.raises(InvalidArgument, match="at most 100"):
        q.check_batch(101)


def test_rate_refusal_says_how_long_to_wait() -> None:
    q = Quotas(rate=100.0, burst=500, daily_cap=10_000)
    err = q.refusal(50, tokens=0.0, used_today=500, now=T0)
    assert err.retry_after == pytest.approx(0.5)
    assert "rate limit of 100" in err.message


def test_daily_cap_refusal_waits_for_midnight_utc() -> None:
    q = Quotas(rate=1e9, burst=1000, daily_cap=1500)
    err = q.refusal(600, tokens=1000.0, used_today=1000, now=T0 + 1)
    assert "daily cap" in err.message
    assert err.retry_after == pytest.approx(DAY_SECONDS - 101)
