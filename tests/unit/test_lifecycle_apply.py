"""domain.lifecycle.apply: each event's outcome, pinned against the rule written with
dataclasses.replace (as it was before the records were built whole), for every kind, from
every state, earlier, equal and later effective times, with and without a tenure."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from numbind.registry.domain.lifecycle import NumberRecord, Outcome, apply
from numbind.registry.domain.types import LifecycleKind, NumberState
from numbind.registry.errors import PermissionDenied


def _reference(
    current: NumberRecord | None, carrier_pk: int, kind: LifecycleKind, effective_us: int
) -> Outcome:
    fresh = current is None
    if current is None:
        current = NumberRecord(
            carrier_pk, NumberState.ACTIVE, None, None, effective_us, effective_us
        )
    elif effective_us < current.last_effective_us:
        return Outcome(current, applied=False)
    rec = replace(
        current,
        first_known_us=min(current.first_known_us, effective_us),
        last_effective_us=max(current.last_effective_us, effective_us),
    )
    if kind == LifecycleKind.ISSUED and (fresh or rec.tenure_start_us is None):
        return Outcome(replace(rec, state=NumberState.ACTIVE, tenure_start_us=effective_us), True)
    if kind in (LifecycleKind.ISSUED, LifecycleKind.REISSUED):
        rec = replace(
            rec,
            state=NumberState.ACTIVE,
            tenure_start_us=effective_us,
            last_reissued_us=effective_us,
        )
        return Outcome(rec, True, revoke_before_us=effective_us)
    if kind == LifecycleKind.DEACTIVATED:
        return Outcome(replace(rec, state=NumberState.DEACTIVATED), True, notify_deactivated=True)
    if kind == LifecycleKind.PORTED_OUT:
        return Outcome(replace(rec, state=NumberState.PORTING), True)
    return Outcome(replace(rec, carrier_pk=carrier_pk, state=NumberState.ACTIVE), True)


_RECORDS: list[NumberRecord | None] = [None] + [
    NumberRecord(7, state, tenure, reissued, 100, 200)
    for state in NumberState
    for tenure, reissued in ((None, None), (150, None), (150, 150))
]


@pytest.mark.parametrize(
    ("current", "kind", "effective_us"),
    list(itertools.product(_RECORDS, LifecycleKind, (50, 150, 200, 300))),
)
def test_apply_gives_what_the_rule_gives(
    current: NumberRecord | None, kind: LifecycleKind, effective_us: int
) -> None:
    for carrier in (7, 8):
        try:
            got = apply(current, carrier, kind, effective_us)
        except PermissionDenied:
            continue  # authority is checked before the rule: nothing to compare
        assert got == _reference(current, carrier, kind, effective_us)
