"""Token-bucket quotas per principal: a rate with a burst, plus a daily cap. Pure policy.

The bucket itself lives in the store (storage.quota), shared by every registry process;
this module says what may be asked for at all and what a refusal tells the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.errors import InvalidArgument, ResourceExhausted

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Quotas:
    rate: float
    burst: int
    daily_cap: int

    def check_batch(self, n: int, what: str = "evaluations") -> None:
        """A batch larger than the burst could never be granted: refuse it as invalid."""
        if n > self.burst:
            raise InvalidArgument(
                f"batch: got {n} {what}, want at most {self.burst} (this principal's burst)"
            )

    def refusal(
        self, n: int, tokens: float, used_today: int, now: float, what: str = "evaluations"
    ) -> ResourceExhausted:
        """Why n units were refused, with how long to wait: the daily cap first (waiting
        for the bucket would not help), else the rate."""
        if used_today + n > self.daily_cap:
            day = int(now // DAY_SECONDS)
            return ResourceExhausted(
                f"quota: daily cap of {self.daily_cap} {what} reached; resets at 00:00 UTC",
                retry_after=(day + 1) * DAY_SECONDS - now,
            )
        wait = max(0.001, (n - tokens) / self.rate)
        return ResourceExhausted(
            f"quota: rate limit of {self.rate:g} {what}/s exceeded; retry in {wait:.2f}s",
            retry_after=wait,
        )
