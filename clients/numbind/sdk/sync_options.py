"""What a sync may withdraw, and how it is told: the default withdrawal limit (a share of
the registry's bindings with a floor, capped at half of them), the options a sync takes,
and the text of its refusal when it would withdraw more."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from numbind.sdk.progress import ProgressCallback

__all__ = [
    "WITHDRAW_FLOOR",
    "WITHDRAW_HALF_FLOOR",
    "WITHDRAW_SHARE_PERCENT",
    "SyncOptions",
    "default_withdraw_limit",
    "refusal_text",
]

# A sync withdraws at most the larger of these unless told otherwise: a truncated export,
# or one pointed at the wrong platform, must not empty the registry's copy.
WITHDRAW_SHARE_PERCENT = 10
WITHDRAW_FLOOR = 1_000
# ... and at most half of the registry's bindings or this many, whichever is larger: on a
# small platform the 1,000 floor alone would let a 10-row export withdraw 990 of 997.
WITHDRAW_HALF_FLOOR = 100


def default_withdraw_limit(server_bindings: int) -> int:
    """The most a sync withdraws unasked: 10 % of the registry's bindings or 1,000, whichever
    is larger; and never more than half of them unless that is 100 or fewer."""
    return min(_share_limit(server_bindings), _half_limit(server_bindings))


def _share_limit(server_bindings: int) -> int:
    return max(server_bindings * WITHDRAW_SHARE_PERCENT // 100, WITHDRAW_FLOOR)


def _half_limit(server_bindings: int) -> int:
    # More than half of 997 is 499 or more: more than 997 // 2.
    return max(server_bindings // 2, WITHDRAW_HALF_FLOOR)


@dataclass(frozen=True)
class SyncOptions:
    bucket_bits: int | None
    dry_run: bool
    # None: default_withdraw_limit; ignored when force.
    max_withdraw: int | None
    force: bool
    work_dir: Path | None
    progress: ProgressCallback | None
    batch_size: int
    in_flight: int

    def __post_init__(self) -> None:
        if self.max_withdraw is not None and self.max_withdraw < 0:
            raise ValueError(f"max_withdraw: got {self.max_withdraw}, want >= 0")
        if self.force and self.max_withdraw is not None:
            raise ValueError("max_withdraw and force: give one (force means no limit)")

    def limit(self, server_bindings: int) -> int | None:
        if self.force:
            return None
        if self.max_withdraw is not None:
            return self.max_withdraw
        return default_withdraw_limit(server_bindings)


def refusal_text(withdrawn: int, server_total: int, limit: int, set_by: str = "") -> str:
    """Why a sync refuses: what it would withdraw, of how many, and the limit (``set_by``
    names the option that set it; empty for the default rule)."""
    share = f" ({withdrawn / server_total:.1%})" if server_total else ""
    if set_by:
        why = set_by
    elif limit == _share_limit(server_total):
        why = (
            f"{WITHDRAW_SHARE_PERCENT} % of the registry's bindings or {WITHDRAW_FLOOR:,}, "
            "whichever is larger"
        )
    else:
        why = f"half of the registry's bindings or {WITHDRAW_HALF_FLOOR:,}, whichever is larger"
    return (
        f"the sync would withdraw {withdrawn:,} of the registry's {server_total:,} "
        f"bindings{share}, more than the limit of {limit:,} ({why})"
    )
