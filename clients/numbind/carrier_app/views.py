"""What the "my numbers" page shows: one card per number, and in it one list per group of
apps (the previous holder's, the subscriber's own) that is also the progress list of every
unbinding asked for them.

Each app appears once per group, in one order (by name) everywhere: in the list, in the
confirmation, in the live updates. Its state is the latest this subscriber asked for
(newest revocation first); else the registry's: an open revocation's state, or REJECTED
when the app refused one (a reissue's); or ``""`` while it is bound and nobody asked.
Pure: no FastAPI, no registry calls (my_numbers.py gathers the registry's answers and
hands them here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from numbind.carrier_app import store as st
from numbind.sdk import NumberView, PlatformView, UnavailableRegistry
from numbind.sdk import RevocationProgress as Progress

__all__ = [
    "OPEN_STATES",
    "SETTLED_STATES",
    "AppRow",
    "Asked",
    "Group",
    "NumberCard",
    "asked_by_group",
    "group_of",
    "number_card",
]

OPEN_STATES = frozenset({"PENDING", "DELIVERED"})
SETTLED_STATES = frozenset({"DONE", "REJECTED", "OVERDUE"})
# Which list a revocation's apps belong to, by the scope the subscriber chose.
_GROUP_OF_SCOPE = {"previous": "previous", "retry": "previous", "platform": "mine"}


def group_of(scope: str) -> str:
    return _GROUP_OF_SCOPE.get(scope, "previous")


@dataclass(frozen=True)
class Asked:
    """One app's part of one revocation this subscriber asked for."""

    revocation_id: str
    requested: datetime
    progress: Progress


@dataclass(frozen=True)
class AppRow:
    platform_id: str
    name: str
    category: str
    # Accounts still bound at this app (0 once unbound), and when they were bound.
    accounts: int
    earliest: datetime | None
    latest: datetime | None
    # "" while bound and not asked; else the state of the latest ask.
    state: str
    reason: str = ""
    reference: str = ""
    deadline: datetime | None = None
    # Accounts the latest ask unbound.
    unbound: int = 0
    # The latest ask's revocation: its proof in the registry's log is downloadable.
    revocation_id: str = ""
    # The registry (federation member) the app publishes to; "" with only one registry.
    registry: str = ""

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES


@dataclass(frozen=True)
class Group:
    """One list of a card: "previous" (bound before the tenure) or "mine"."""

    kind: str
    rows: list[AppRow] = field(default_factory=list)
    # When the latest ask for these apps was made, if any.
    requested: datetime | None = None

    @property
    def to_ask(self) -> list[AppRow]:
        """Bound, and nobody asked yet: what 一键解绑 asks."""
        return [r for r in self.rows if r.state == ""]

    @property
    def asked(self) -> list[AppRow]:
        return [r for r in self.rows if r.state]

    @property
    def overdue(self) -> list[AppRow]:
        """Asked, not confirmed in time: what a retry asks again (never a refusal)."""
        return [r for r in self.rows if r.state == "OVERDUE"]

    @property
    def still_bound(self) -> int:
        return sum(r.state != "DONE" for r in self.rows)

    @property
    def live(self) -> bool:
        return any(r.state in OPEN_STATES for r in self.rows)


@dataclass(frozen=True)
class NumberCard:
    id: int
    masked: str
    tenure_start: datetime
    previous: Group
    mine: Group
    # False when the registry could not be asked: the lists show only what was asked.
    loaded: bool
    # How long apps have to confirm (the registry's order deadline), when it said.
    order_deadline: timedelta | None = None
    # Apps in revocations of this number that have not settled yet.
    asking: int = 0
    # Registries the query could not reach: their apps may be missing from the lists.
    unreachable: tuple[UnavailableRegistry, ...] = ()

    @property
    def live(self) -> bool:
        return self.asking > 0

    @property
    def empty(self) -> bool:
        return not self.previous.rows and not self.mine.rows


def asked_by_group(
    records: list[st.RevocationRecord], results: list[list[Progress] | None]
) -> tuple[dict[str, dict[str, Asked]], int]:
    """The latest ask per (group, app) for one number, from its revocations (newest first)
    and their progress (None if it could not be read); and how many apps are in
    revocations that have not settled."""
    latest: dict[str, dict[str, Asked]] = {"previous": {}, "mine": {}}
    unsettled: set[str] = set()
    for record, progress in zip(records, results, strict=True):
        requested = datetime.fromtimestamp(record.created_at, UTC)
        group = latest[group_of(record.scope)]
        for p in progress or []:
            group.setdefault(p.platform_id, Asked(record.id, requested, p))
        if progress and any(p.state not in SETTLED_STATES for p in progress):
            unsettled.update(p.platform_id for p in progress)
    return latest, len(unsettled)


def _row(view: PlatformView | None, asked: Asked | None) -> AppRow:
    state = reason = reference = rid = ""
    deadline: datetime | None = None
    unbound = 0
    if asked is not None:
        rid = asked.revocation_id
        p = asked.progress
        state, reason, reference, deadline, unbound = (
            p.state,
            p.reason,
            p.reference,
            p.deadline,
            p.done,
        )
    if view is None:
        assert asked is not None
        p = asked.progress
        return AppRow(
            p.platform_id, p.display_name, p.category, 0, None, None, state, reason,
            reference, deadline, unbound, rid, p.registry_name or p.registry_id,
        )  # fmt: skip
    if state == "DONE" or (not state and view.open_state):
        # Still (or again) bound after an ask that unbound everything: bound anew since,
        # or being revoked by someone else's ask (the carrier's reissue report).
        state, reason, reference, deadline, rid = view.open_state, "", "", None, ""
    if not state and view.refused is not None:
        # Refused someone else's ask (the carrier's reissue report, or an ask older than
        # those this page reads): shown as a refusal of the subscriber's own, so never in
        # 一键解绑. No proof link: the app serves proofs of the subscriber's asks only.
        state, reason, reference = "REJECTED", view.refused.reason, view.refused.reference
    return AppRow(
        view.platform_id, view.display_name, view.category, view.active_count, view.earliest,
        view.latest, state, reason, reference, deadline, unbound, rid,
        view.registry_name or view.registry_id,
    )  # fmt: skip


def _group(kind: str, views: list[PlatformView] | None, asked: dict[str, Asked]) -> Group:
    rows: list[AppRow] = []
    seen: set[str] = set()
    for v in views or []:
        rows.append(_row(v, asked.get(v.platform_id)))
        seen.add(v.platform_id)
    rows.extend(_row(None, a) for pid, a in asked.items() if pid not in seen)
    rows.sort(key=lambda r: (r.name, r.platform_id))
    requested = max((a.requested for a in asked.values()), default=None)
    return Group(kind, rows, requested)


def number_card(
    number: st.Number,
    view: NumberView | None,
    asked: dict[str, dict[str, Asked]],
    asking: int,
    order_deadline: timedelta | None = None,
) -> NumberCard:
    """One number's card. ``view`` is the registry's answer (None if the query failed, or
    was not made: then the lists hold only what was asked); ``order_deadline`` stands in
    for the view's when there is none."""
    previous = mine = None
    if view is not None:
        previous = [p for p in view.platforms if p.pre_tenure]
        mine = [p for p in view.platforms if not p.pre_tenure]
    return NumberCard(
        number.id,
        st.mask(number.e164),
        view.tenure_start if view is not None and view.tenure_start else number.tenure_start,
        _group("previous", previous, asked["previous"]),
        _group("mine", mine, asked["mine"]),
        view is not None,
        view.order_deadline if view is not None and view.order_deadline else order_deadline,
        asking,
        view.unavailable if view is not None else (),
    )
