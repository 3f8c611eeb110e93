"""Which bindings a report's triggers order (services.lifecycle_orders), and what a logged
event triggered (domain.lifecycle.trigger_of): the report's own transaction and the local
applier's chunks must order the same bindings, once."""

from __future__ import annotations

import pytest
from numbind.registry.domain.lifecycle import Trigger, trigger_of
from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    EventKind,
    LifecycleKind,
    Token,
)
from numbind.registry.services.lifecycle_orders import plan
from numbind.registry.storage.bindings import StoredBinding

T = b"t" * 32


def _b(pk: int, bound_us: int, state: BindingState = BindingState.ACTIVE) -> StoredBinding:
    return StoredBinding(pk, 7, Binding(Token("k", T), b"ref", bound_us, BindingKind.LOGIN), state)


def test_a_logged_event_triggers_what_apply_decided() -> None:
    assert trigger_of(LifecycleKind.REISSUED, 50) == Trigger(50, False)
    assert trigger_of(LifecycleKind.ISSUED, 50) == Trigger(50, False)
    assert trigger_of(LifecycleKind.DEACTIVATED, 50) == Trigger(None, True)
    with pytest.raises(ValueError):
        trigger_of(LifecycleKind.PORTED_OUT, 50)


def test_revokes_active_bindings_bound_before_the_tenure_once() -> None:
    live = {T: [_b(1, 10), _b(2, 60), _b(3, 10, BindingState.REVOKING)]}
    groups = plan([("r", T, Trigger(50, False)), ("r", T, Trigger(55, False))], live)
    assert [(o.binding.pk, o.kind) for o in groups["r"].new] == [(1, EventKind.REVOKE)]
    assert (groups["r"].revokes, groups["r"].notices, groups["r"].revoked) == (1, 0, True)


def test_deactivation_notifies_every_live_binding() -> None:
    live = {T: [_b(1, 10), _b(2, 60, BindingState.REVOKING)]}
    groups = plan([("r", T, Trigger(None, True))], live)
    assert [o.binding.pk for o in groups["r"].new] == [1, 2]
    assert (groups["r"].notices, groups["r"].revoked) == (2, False)


def test_what_an_earlier_chunk_ordered_is_not_ordered_again() -> None:
    live = {T: [_b(1, 10), _b(2, 10)]}
    done = {("r", 1, int(EventKind.REVOKE)), ("r", 2, int(EventKind.NUMBER_DEACTIVATED))}
    groups = plan([("r", T, Trigger(None, True)), ("r", T, Trigger(50, False))], live, done=done)
    assert [(o.binding.pk, o.kind) for o in groups["r"].new] == [
        (1, EventKind.NUMBER_DEACTIVATED),
        (2, EventKind.REVOKE),
    ]
