"""Token-bucket quotas per principal: a rate with a burst, plus a daily cap. Pure logic."""

from __future__ import annotations

from dataclasses import dataclass, field

from numbind.registry.errors import InvalidArgument, ResourceExhausted

DAY_SECONDS = 86_400


@dataclass
class Bucket:
    rate: float
    burst: float
    daily_cap: int
    tokens: float = -1.0
    updated: float = 0.0
    day: int = -1
    used_today: int = 0

    def take(self, n: int, now: float, what: str = "evaluations") -> None:
        """Spend n units or raise ResourceExhausted with how long to wait."""
        if n > self.burst:
            raise InvalidArgument(
                f"batch: got {n} {what}, want at most {int(self.burst)} (this principal's burst)"
            )
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        day = int(now // DAY_SECONDS)
        if day != self.day:
            self.day, self.used_today = day, 0
        if self.used_today + n > self.daily_cap:
            wait = (day + 1) * DAY_SECONDS - now
            raise ResourceExhausted(
                f"quota: daily cap of {self.daily_cap} {what} reached; resets at 00:00 UTC",
                retry_after=wait,
            )
        if self.tokens < n:
            wait = (n - self.tokens) / self.rate
            raise ResourceExhausted(
                f"quota: rate limit of {self.rate:g} {what}/s exceeded; retry in {wait:.2f}s",
                retry_after=wait,
            )
        self.tokens -= n
        self.used_today += n

    def refund(self, n: int) -> None:
        self.tokens = min(self.burst, self.tokens + n)
        self.used_today = max(0, self.used_today - n)


@dataclass
class Quotas:
    rate: float
    burst: int
    daily_cap: int
    _buckets: dict[int, Bucket] = field(default_factory=dict)

    def refund(self, principal_pk: int, n: int) -> None:
        """Give back units taken for work that was then refused."""
        bucket = self._buckets.get(principal_pk)
        if bucket is not None:
            bucket.refund(n)

    def known(self, principal_pk: int) -> bool:
        """False until the first take(); the caller then seeds used_today from storage."""
        return principal_pk in self._buckets

    def take(self, principal_pk: int, n: int, now: float, used_today: int = 0) -> None:
        bucket = self._buckets.get(principal_pk)
        if bucket is None:
            bucket = Bucket(self.rate, float(self.burst), self.daily_cap)
            bucket.day, bucket.used_today = int(now // DAY_SECONDS), used_today
            self._buckets[principal_pk] = bucket
        bucket.take(n, now)
