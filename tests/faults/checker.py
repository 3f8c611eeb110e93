"""The fault suite's one checker: what a platform was owed against what it received.

Every fault case ends the same way: a set of events that must reach a consumer (keyed by
order id or feed event id) and the list of keys the consumer actually received, in order,
duplicates included. A key received once is *delivered*; each further receipt of it is a
*redelivery* (allowed: at-least-once delivery, consumers deduplicate by key); an owed key
never received is *lost*; a received key that was never owed is *unexpected*. Lost and
unexpected must both be 0.

Rows go into a module-level registry that tests/conftest.py prints as the fault
suite's summary table at the end of the test run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FaultRow:
    """One case's tally of owed events."""

    case: str
    expected: int
    delivered: int
    redelivered: int
    lost: int
    unexpected: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.unexpected == 0


@dataclass(frozen=True)
class BadInputRow:
    """One fuzz run: how many bad inputs were sent and how many got INTERNAL/UNKNOWN."""

    case: str
    sent: int
    internal_or_unknown: int
    by_status: tuple[tuple[str, int], ...] = ()


ROWS: list[FaultRow] = []
BAD_INPUT_ROWS: list[BadInputRow] = []


def classify(
    case: str,
    expected: Iterable[Hashable],
    received: Iterable[T],
    key: Callable[[T], Hashable] | None = None,
) -> FaultRow:
    """Tally `received` (in arrival order, duplicates kept) against the `expected` keys.

    `key` extracts the deduplication key (order id, event id) from a received item; without
    it the items are the keys. `expected` is a set: naming a key twice owes it once.
    """
    owed = set(expected)
    keys = [key(item) for item in received] if key else list(received)
    counts: Counter[Hashable] = Counter(keys)
    delivered = sum(1 for k in counts if k in owed)
    redelivered = sum(n - 1 for k, n in counts.items() if k in owed)
    unexpected = sum(n for k, n in counts.items() if k not in owed)
    return FaultRow(
        case=case,
        expected=len(owed),
        delivered=delivered,
        redelivered=redelivered,
        lost=len(owed) - delivered,
        unexpected=unexpected,
    )


def record(row: FaultRow) -> FaultRow:
    """Keep `row` for the summary table (replacing an earlier row of the same case)."""
    ROWS[:] = [r for r in ROWS if r.case != row.case]
    ROWS.append(row)
    return row


def check(
    case: str,
    expected: Iterable[Hashable],
    received: Iterable[T],
    key: Callable[[T], Hashable] | None = None,
) -> FaultRow:
    """Classify, record, and fail the test if anything owed was lost or anything unowed came."""
    row = record(classify(case, expected, received, key))
    assert row.ok, f"{case}: {row.lost} lost, {row.unexpected} unexpected ({row})"
    return row


def record_bad_inputs(
    case: str, sent: int, statuses: Counter[str] | dict[str, int] | None = None
) -> BadInputRow:
    """Keep a fuzz run's tally; `statuses` maps a gRPC status name to how many got it."""
    by_status = dict(statuses or {})
    bad = by_status.get("INTERNAL", 0) + by_status.get("UNKNOWN", 0)
    row = BadInputRow(case, sent, bad, tuple(sorted(by_status.items())))
    BAD_INPUT_ROWS[:] = [r for r in BAD_INPUT_ROWS if r.case != case]
    BAD_INPUT_ROWS.append(row)
    return row


def summary_lines(
    rows: Iterable[FaultRow] | None = None, bad: Iterable[BadInputRow] | None = None
) -> list[str]:
    """The fault suite's summary table, one line per case, then the bad-input tallies."""
    rows = list(ROWS if rows is None else rows)
    bad = list(BAD_INPUT_ROWS if bad is None else bad)
    heads = ("case", "expected", "delivered", "redelivered", "lost", "unexpected")
    width = max([len(heads[0])] + [len(r.case) for r in rows] + [len(b.case) for b in bad])
    lines = [f"{heads[0]:<{width}}  " + "  ".join(f"{h:>11}" for h in heads[1:])]
    for r in rows:
        nums = (r.expected, r.delivered, r.redelivered, r.lost, r.unexpected)
        lines.append(f"{r.case:<{width}}  " + "  ".join(f"{n:>11}" for n in nums))
    if not rows:
        lines.append("(no event-delivery case ran)")
    for b in bad:
        lines.append(
            f"{b.case:<{width}}  bad inputs {b.sent}, INTERNAL/UNKNOWN {b.internal_or_unknown}"
        )
        if b.by_status:
            lines.append(" " * (width + 2) + ", ".join(f"{name} {n}" for name, n in b.by_status))
    return lines
