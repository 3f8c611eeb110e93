"""Carrier lifecycle reports and the reassigned-since check. No grpc here.

A report is one transaction: authority for every event is checked before anything is
written, then number states, the audit log, revocation orders, notices and feed entries
are written together (DESIGN.md, "Flow of a revocation", step 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numbind.protocol.limits import MAX_LIFECYCLE_EVENTS, MAX_REASSIGNED_QUERIES
from numbind.registry.domain import lifecycle, validate
from numbind.registry.domain.quota import DAY_SECONDS
from numbind.registry.domain.types import (
    BindingState,
    EventCause,
    EventKind,
    LifecycleKind,
    Principal,
    Token,
    now_us,
)
from numbind.registry.errors import InvalidArgument, PermissionDenied
from numbind.registry.keys import KeyRing
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.storage import bindings, idempotency, numbers, orders, usage
from numbind.registry.storage.db import Database, Session

MAX_EVENTS = MAX_LIFECYCLE_EVENTS
MAX_QUERIES = MAX_REASSIGNED_QUERIES


@dataclass(frozen=True)
class LifecycleInput:
    token: Token
    kind: int
    effective_us: int


@dataclass(frozen=True)
class ReportResult:
    applied: int
    superseded: int
    orders_created: int
    notices_created: int
    revocation_id: str


class LifecycleService:
    def __init__(
        self, db: Database, keys: KeyRing, notifier: FeedNotifier, deadline_seconds: float
    ) -> None:
        self._db = db
        self._keys = keys
        self._notifier = notifier
        self._deadline = deadline_seconds

    def _validate(self, events: list[LifecycleInput]) -> None:
        validate.batch_size("events", len(events), MAX_EVENTS)
        live = frozenset(k.key_id for k in self._keys.live())
        now = now_us()
        for i, ev in enumerate(events):
            validate.token(f"events[{i}].token", ev.token.key_id, ev.token.value, live)
            if ev.kind not in LifecycleKind._value2member_map_:
                raise InvalidArgument(
                    f"events[{i}].kind: got {ev.kind}, want ISSUED, DEACTIVATED, REISSUED, "
                    "PORTED_OUT or PORTED_IN"
                )
            validate.instant(f"events[{i}].effective_at", ev.effective_us, now=now)

    async def report(
        self, caller: Principal, request_id: str, body_hash: bytes, events: list[LifecycleInput]
    ) -> ReportResult:
        validate.request_id(request_id)
        self._validate(events)

        def act(session: Session) -> dict[str, Any]:
            return idempotency.once(
                session,
                caller.pk,
                "ReportLifecycle",
                request_id,
                body_hash,
                lambda: self._apply(session, caller, events),
            )

        result = await self._db.run(act)
        self._notifier.notify(result.pop("platforms"))
        return ReportResult(**result)

    def _apply(
        self, session: Session, caller: Principal, events: list[LifecycleInput]
    ) -> dict[str, Any]:
        tokens = [ev.token.value for ev in events]
        known = numbers.load(session, tokens, lock=True)
        state: dict[bytes, lifecycle.NumberRecord | None] = dict(known)
        key_ids: dict[bytes, str] = {}
        outcomes: list[lifecycle.Outcome] = []
        for i, ev in enumerate(events):
            try:
                out = lifecycle.apply(
                    state.get(ev.token.value), caller.pk, LifecycleKind(ev.kind), ev.effective_us
                )
            except PermissionDenied:
                raise PermissionDenied(
                    f"events[{i}].token: carrier {caller.name} does not currently serve this "
                    "number; nothing from this batch was written"
                ) from None
            state[ev.token.value] = out.record
            key_ids[ev.token.value] = ev.token.key_id
            outcomes.append(out)

        triggered = [
            t
            for t, o in zip(tokens, outcomes, strict=True)
            if o.revoke_before_us is not None or o.notify_deactivated
        ]
        live = bindings.live_for_tokens(session, triggered)
        revoking: set[int] = set()
        new: list[orders.NewOrder] = []
        notices = revokes = 0
        for token, out in zip(tokens, outcomes, strict=True):
            if out.notify_deactivated:
                for b in live.get(token, ()):
                    new.append(
                        orders.NewOrder(
                            b, EventKind.NUMBER_DEACTIVATED, EventCause.DEACTIVATED, None
                        )
                    )
                    notices += 1
            if out.revoke_before_us is not None:
                for b in live.get(token, ()):
                    if (
                        b.bound_us < out.revoke_before_us
                        and b.state == int(BindingState.ACTIVE)
                        and b.pk not in revoking
                    ):
                        revoking.add(b.pk)
                        new.append(
                            orders.NewOrder(
                                b, EventKind.REVOKE, EventCause.REISSUED, out.revoke_before_us
                            )
                        )
                        revokes += 1
        revocation_id = ""
        platforms: set[int] = set()
        if new:
            cause = EventCause.REISSUED if revokes else EventCause.DEACTIVATED
            revocation_id = orders.new_revocation(session, cause, caller.pk)
            platforms = orders.append(session, revocation_id, new, self._deadline)
        final = {t: (key_ids[t], rec) for t, rec in state.items() if rec is not None}
        numbers.save(session, final, set(known))
        recorded = now_us()
        numbers.log_events(
            session,
            [
                {
                    "token": ev.token.value,
                    "carrier_pk": caller.pk,
                    "kind": ev.kind,
                    "effective_us": ev.effective_us,
                    "recorded_us": recorded,
                    "applied": out.applied,
                    "revocation_id": revocation_id or None,
                }
                for ev, out in zip(events, outcomes, strict=True)
            ],
        )
        applied = sum(o.applied for o in outcomes)
        return {
            "applied": applied,
            "superseded": len(outcomes) - applied,
            "orders_created": revokes,
            "notices_created": notices,
            "revocation_id": revocation_id,
            "platforms": sorted(platforms),
        }

    async def check_reassigned(
        self, caller: Principal, queries: list[tuple[Token, int]]
    ) -> list[int]:
        validate.batch_size("queries", len(queries), MAX_QUERIES)
        now = now_us()
        for i, (token, since) in enumerate(queries):
            validate.token(f"queries[{i}].token", token.key_id, token.value)
            validate.instant(f"queries[{i}].since", since, now=now)
        day = int(now // 1_000_000 // DAY_SECONDS)

        def act(session: Session) -> list[int]:
            records = numbers.load(session, [t.value for t, _ in queries])
            usage.add(session, caller.pk, day, checks=len(queries))
            return [lifecycle.reassigned_since(records.get(t.value), s) for t, s in queries]

        return await self._db.run(act)
