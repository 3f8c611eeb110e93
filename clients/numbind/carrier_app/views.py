"""What the "my numbers" pages show: one card per number, the apps bound to it, and the
progress of each revocation; and the progress as the JSON that static/app.js polls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from numbind.carrier_app import store as st
from numbind.carrier_app.i18n import Translator
from numbind.sdk import NumberView, PlatformView
from numbind.sdk import RevocationProgress as Progress

__all__ = [
    "FINAL_STATES",
    "SETTLED_STATES",
    "NumberCard",
    "PlatformRow",
    "ProgressBlock",
    "number_cards",
    "progress_blocks",
    "progress_json",
]

FINAL_STATES = frozenset({"DONE", "REJECTED"})
SETTLED_STATES = frozenset({"DONE", "REJECTED", "OVERDUE"})


@dataclass(frozen=True)
class PlatformRow:
    platform_id: str
    name: str
    category: str
    count: int
    earliest: datetime | None
    latest: datetime | None
    open_state: str
    # The app refused the last unbinding this subscriber asked for.
    refused: bool = False


@dataclass(frozen=True)
class NumberCard:
    id: int
    masked: str
    tenure_start: datetime
    previous: list[PlatformRow]
    mine: list[PlatformRow]
    loaded: bool

    @property
    def revocable_previous(self) -> list[PlatformRow]:
        return [p for p in self.previous if not p.open_state]


@dataclass(frozen=True)
class ProgressBlock:
    id: str
    number_id: int
    scope: str
    requested: datetime
    platforms: list[Progress] | None

    @property
    def settled(self) -> bool:
        return self.platforms is not None and all(p.state in SETTLED_STATES for p in self.platforms)

    @property
    def final(self) -> bool:
        return self.platforms is not None and all(p.state in FINAL_STATES for p in self.platforms)

    @property
    def states(self) -> list[str]:
        return [p.state for p in self.platforms or []]


def _rows(platforms: list[PlatformView], pre: bool, rejected: set[str]) -> list[PlatformRow]:
    return [
        PlatformRow(
            p.platform_id,
            p.display_name,
            p.category,
            p.active_count,
            p.earliest,
            p.latest,
            p.open_state,
            p.platform_id in rejected and not p.open_state,
        )
        for p in platforms
        if p.pre_tenure == pre
    ]


def progress_blocks(
    records: list[st.RevocationRecord], results: list[list[Progress] | None]
) -> tuple[dict[int, list[ProgressBlock]], dict[tuple[int, str], str]]:
    """Blocks per number, and the latest state each app reached for each number.

    `records` come newest first, so the first state seen for (number, app) is its latest.
    `results[i]` is the progress of `records[i]` (None if it could not be read).
    """
    blocks: dict[int, list[ProgressBlock]] = {}
    last: dict[tuple[int, str], str] = {}
    for r, res in zip(records, results, strict=True):
        blocks.setdefault(r.number_id, []).append(
            ProgressBlock(
                r.id, r.number_id, r.scope, datetime.fromtimestamp(r.created_at, UTC), res
            )
        )
        for p in res or []:
            last.setdefault((r.number_id, p.platform_id), p.state)
    return blocks, last


def number_cards(
    numbers: list[st.Number],
    views: list[NumberView] | None,
    last: dict[tuple[int, str], str],
) -> list[NumberCard]:
    """One card per number; `views` is the registry's answer in the same order (None if
    the query failed: the cards then show the numbers without their bindings)."""
    cards = []
    for i, n in enumerate(numbers):
        v = views[i] if views is not None else None
        rejected = {
            pid for (nid, pid), state in last.items() if nid == n.id and state == "REJECTED"
        }
        cards.append(
            NumberCard(
                n.id,
                st.mask(n.e164),
                (v.tenure_start if v and v.tenure_start else n.tenure_start),
                _rows(v.platforms, True, rejected) if v else [],
                _rows(v.platforms, False, rejected) if v else [],
                v is not None,
            )
        )
    return cards


def progress_json(t: Translator, rid: str, progress: list[Progress]) -> dict[str, Any]:
    final = all(p.state in FINAL_STATES for p in progress)
    settled = all(p.state in SETTLED_STATES for p in progress)
    return {
        "id": rid,
        "final": final,
        "settled": settled,
        "summary": t.progress_summary([p.state for p in progress]),
        "status": t(
            "progress.finished" if final else "progress.waiting" if settled else "progress.live"
        ),
        "platforms": [
            {
                "id": p.platform_id,
                "name": p.display_name,
                "category": t.category(p.category),
                "state": p.state,
                "label": t.state(p.state),
                "reason": t("progress.reason", reason=p.reason) if p.reason else "",
                "note": t("progress.overdue_note") if p.state == "OVERDUE" else "",
                "orders": p.orders,
            }
            for p in progress
        ],
    }
