"""Carrier lifecycle reports and the reassigned-since check. No grpc here.

Authority for every event is checked before anything is written. A single registry's
report then commits its triggers (number states, the lifecycle log naming the revocation,
the revocation, the events' log leaves) and its orders and notices (each with its place in
its platform's feed) follow in chunks, each committed with a cursor (services.local_apply;
issue 14); the call answers once they all exist. A federation's hub, and a member
replaying the hub's log, write everything in one transaction (DESIGN.md, "Flow of a
revocation", step 2).

Every token is mapped to the store key first (services.tokenmap), so a number has one
record whichever key a carrier tokenised it under: authority, tenure and history carry
across rotations, and a row still in the old form is converted in place by the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numbind.protocol.limits import MAX_LIFECYCLE_EVENTS, MAX_REASSIGNED_QUERIES
from numbind.registry.domain import lifecycle, logged, validate
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.quota import DAY_SECONDS
from numbind.registry.domain.types import (
    EventCause,
    LifecycleKind,
    Principal,
    Token,
    now_us,
)
from numbind.registry.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from numbind.registry.services import lifecycle_orders, log_record
from numbind.registry.services.local_apply import APPLY_CHUNK, FIRST_CHUNK, LocalApplier
from numbind.registry.services.notifier import LOG_CHANNEL, FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import (
    bindings,
    idempotency,
    log,
    numbers,
    orders,
    replication,
    usage,
)
from numbind.registry.storage import local_apply as local_store
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
    # Each event's leaf in the verifiable log, in report order.
    leaf_indices: tuple[int, ...] = ()


@dataclass(frozen=True)
class MappedEvent:
    """An event whose token is mapped to the store key; `revocation_id`: the hub's
    revocation for it, when a member replays the hub's log ("" otherwise)."""

    token: StoreToken
    kind: int
    effective_us: int
    revocation_id: str = ""


@dataclass(frozen=True)
class _Numbers:
    """A report's numbers: store-key value -> (the form its row is stored under, record),
    and each one's state after the report's events (None: still unknown)."""

    stored: dict[bytes, tuple[bytes, lifecycle.NumberRecord]]
    state: dict[bytes, lifecycle.NumberRecord | None]


class LifecycleService:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        notifier: FeedNotifier,
        deadline_seconds: float,
        *,
        report_at: str | None = None,
        federated: bool = False,
        apply_chunk: int = APPLY_CHUNK,
    ) -> None:
        """`federated`: this is a federation's lifecycle authority, whose members hold
        the bindings: every report that triggers gets a revocation (the members' orders
        take its id), even with no order here. `apply_chunk`: most events per chunk of a
        single registry's report (services.local_apply)."""
        self._db = db
        self._tokens = tokens
        self._notifier = notifier
        self._deadline = deadline_seconds
        # A federation member: where carriers report instead (the lifecycle authority).
        self._report_at = report_at
        self._federated = federated
        # A single registry creates a report's orders after its commit, in chunks; a
        # federation's hub (no bindings) and members (replaying the hub) in one transaction.
        self.applier = (
            None
            if federated or report_at is not None
            else LocalApplier(
                db,
                tokens,
                notifier,
                deadline_seconds,
                first_chunk=min(FIRST_CHUNK, apply_chunk),
                chunk=apply_chunk,
            )
        )

    @staticmethod
    def _validate(events: list[LifecycleInput], view: KeyView) -> list[MappedEvent]:
        validate.batch_size("events", len(events), MAX_EVENTS)
        now = now_us()
        out: list[MappedEvent] = []
        for i, ev in enumerate(events):
            st = view.map(f"events[{i}].token", ev.token.key_id, ev.token.value)
            if ev.kind not in LifecycleKind._value2member_map_:
                raise InvalidArgument(
                    f"events[{i}].kind: got {ev.kind}, want ISSUED, DEACTIVATED, REISSUED, "
                    "PORTED_OUT or PORTED_IN"
                )
            validate.instant(f"events[{i}].effective_at", ev.effective_us, now=now)
            out.append(MappedEvent(st, ev.kind, ev.effective_us))
        return out

    async def report(
        self, caller: Principal, request_id: str, body_hash: bytes, events: list[LifecycleInput]
    ) -> ReportResult:
        if self._report_at is not None:
            raise FailedPrecondition(self._report_at)
        validate.request_id(request_id)

        def prepare(view: KeyView) -> list[MappedEvent]:
            return self._validate(events, view)

        def act(session: Session, view: KeyView, mapped: list[MappedEvent]) -> dict[str, Any]:
            return idempotency.once(
                session,
                caller.pk,
                "ReportLifecycle",
                request_id,
                body_hash,
                lambda: self._write(session, caller, view.store_key_id, mapped),
            )

        result = await self._tokens.run(prepare, act)
        self.notify(result.pop("platforms"))
        result["leaf_indices"] = tuple(result.get("leaf_indices", ()))
        through = result.pop("through_seq", 0)
        if self.applier is not None and through:
            # The answer as a report in one transaction gave it: once its orders exist,
            # counted from the revocation (a retry's answer is the same).
            await self.applier.wait(through)
            revokes, notices = await self.applier.counts(result["revocation_id"])
            result["orders_created"], result["notices_created"] = revokes, notices
        result.setdefault("orders_created", 0)
        result.setdefault("notices_created", 0)
        return ReportResult(**result)

    def _write(
        self, session: Session, caller: Principal, store_key: str, events: list[MappedEvent]
    ) -> dict[str, Any]:
        if self.applier is None:
            return self._apply(session, caller, store_key, events)
        return self._record(session, caller, store_key, events)

    def notify(self, platforms: list[int]) -> None:
        """After a commit that applied events: wake the platforms' feeds and the log's
        followers."""
        self._notifier.notify([*platforms, LOG_CHANNEL])

    def apply_mapped(
        self, session: Session, source: Principal, store_key: str, events: list[MappedEvent]
    ) -> dict[str, Any]:
        """Apply events already checked elsewhere (a member replaying the hub's log, with
        the hub's registry principal as `source`) in the caller's transaction; the caller
        commits, then calls `notify` with the returned "platforms"."""
        return self._apply(session, source, store_key, events)

    def _decide(
        self, session: Session, caller: Principal, events: list[MappedEvent]
    ) -> tuple[_Numbers, list[lifecycle.Outcome]]:
        """The numbers (locked) and each event's outcome; authority checked for all first."""
        stored = numbers.load_stored(session, [ev.token for ev in events], lock=True)
        state: dict[bytes, lifecycle.NumberRecord | None] = {v: r for v, (_, r) in stored.items()}
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
            outcomes.append(out)
        return _Numbers(stored, state), outcomes

    @staticmethod
    def _write_events(
        session: Session,
        caller: Principal,
        store_key: str,
        events: list[MappedEvent],
        outcomes: list[lifecycle.Outcome],
        nums: _Numbers,
        rids: list[str | None],
    ) -> list[logged.LogLeaf]:
        """Number states and the lifecycle log (each event's row naming `rids[i]`); the
        events' log leaves, for the caller to append last."""
        final = {t: rec for t, rec in nums.state.items() if rec is not None}
        numbers.save(session, final, {v: form for v, (form, _) in nums.stored.items()}, store_key)
        recorded = now_us()
        numbers.log_events(
            session,
            [
                {
                    "token": ev.token.value,
                    "key_id": store_key,
                    "carrier_pk": caller.pk,
                    "kind": ev.kind,
                    "effective_us": ev.effective_us,
                    "recorded_us": recorded,
                    "applied": out.applied,
                    "revocation_id": rid,
                }
                for ev, out, rid in zip(events, outcomes, rids, strict=True)
            ],
        )
        return [
            logged.lifecycle(
                carrier_pk=caller.pk,
                carrier=caller.name,
                token=ev.token.value,
                key_id=store_key,
                kind=ev.kind,
                effective_us=ev.effective_us,
                applied=out.applied,
                tenure_start_us=out.record.tenure_start_us,
                # Only an event that triggered names the batch's revocation: porting never does.
                revocation_id=rid if lifecycle.trigger(out) is not None else None,
            )
            for ev, out, rid in zip(events, outcomes, rids, strict=True)
        ]

    def _record(
        self, session: Session, caller: Principal, store_key: str, events: list[MappedEvent]
    ) -> dict[str, Any]:
        """A single registry's report: its triggers only; the local applier creates their
        orders after the commit (services.local_apply). "through_seq": the last event that
        names the revocation, whose orders the answer waits for (0: nothing to wait for)."""
        nums, outcomes = self._decide(session, caller, events)
        triggers = [lifecycle.trigger(o) for o in outcomes]
        rid = ""
        if any(t is not None for t in triggers):
            revokes = any(t is not None and t.revoke_before_us is not None for t in triggers)
            cause = EventCause.REISSUED if revokes else EventCause.DEACTIVATED
            rid = orders.new_revocation(session, cause, caller.pk)
        names = [rid if t is not None else None for t in triggers]
        leaves = self._write_events(session, caller, store_key, events, outcomes, nums, names)
        through = 0
        if rid:
            # The log head's row is this transaction's (locked by log_events): its events
            # hold the sequences up to it.
            first = replication.head(session)[0] - len(events) + 1
            through = first + max(i for i, t in enumerate(triggers) if t is not None)
            local_store.mark_through(session, rid, through)
            local_store.start(session, first - 1)
        first_leaf = log.append(session, leaves)
        return _answer(first_leaf, outcomes, revocation_id=rid, through_seq=through, platforms=[])

    def _apply(
        self, session: Session, caller: Principal, store_key: str, events: list[MappedEvent]
    ) -> dict[str, Any]:
        """Events and their orders in one transaction: a member replaying the hub's log, and
        the hub (whose report orders nothing: its members hold the bindings)."""
        nums, outcomes = self._decide(session, caller, events)
        mapped = {ev.token.value: ev.token for ev in events}
        items = [
            (ev.revocation_id, ev.token.value, trig)
            for ev, out in zip(events, outcomes, strict=True)
            if (trig := lifecycle.trigger(out)) is not None
        ]
        live = bindings.live_for_tokens(session, [mapped[t] for _, t, _ in items])
        # Orders per revocation: "" is this report's own; a member replaying the hub's log
        # files each event's orders under the revocation the hub made for it.
        groups = lifecycle_orders.plan(items, live)
        revokes = sum(g.revokes for g in groups.values())
        notices = sum(g.notices for g in groups.values())
        rids: dict[str, str] = {}
        platforms: set[int] = set()
        trail: list[logged.LogLeaf] = []
        for hub_rid, group in groups.items():
            # A federation's revocation is one id everywhere and exists even where it
            # orders nothing (the hub holds no binding; a member holding none of the
            # number's says so): the carrier's GetRevocation at the hub then asks each
            # member for its part. A registry of its own makes one only with orders.
            federated = bool(hub_rid) or self._federated
            if not group.new and not federated:
                continue
            revoked = group.revoked if federated else group.revokes > 0
            cause = EventCause.REISSUED if revoked else EventCause.DEACTIVATED
            if hub_rid and orders.revocation(session, hub_rid) is not None:
                rid = hub_rid  # the rest of a report a previous batch began
            else:
                rid = orders.new_revocation(
                    session, cause, caller.pk, revocation_id=hub_rid or None
                )
            rids[hub_rid] = rid
            created: list[tuple[str, orders.NewOrder]] = []
            platforms |= orders.append(session, rid, group.new, self._deadline, created=created)
            trail += log_record.revocation(session, rid, cause, caller.pk, caller.name, created)
        names = [rids.get(ev.revocation_id) or None for ev in events]
        leaves = self._write_events(session, caller, store_key, events, outcomes, nums, names)
        first = log.append(session, [*leaves, *trail])
        return _answer(
            first,
            outcomes,
            orders_created=revokes,
            notices_created=notices,
            revocation_id=rids.get("", ""),
            platforms=sorted(platforms),
        )

    async def check_reassigned(
        self, caller: Principal, queries: list[tuple[Token, int]]
    ) -> list[int]:
        validate.batch_size("queries", len(queries), MAX_QUERIES)
        now = now_us()
        day = int(now // 1_000_000 // DAY_SECONDS)

        def prepare(view: KeyView) -> list[StoreToken]:
            mapped = []
            for i, (token, since) in enumerate(queries):
                mapped.append(view.map(f"queries[{i}].token", token.key_id, token.value))
                validate.instant(f"queries[{i}].since", since, now=now)
            return mapped

        def act(session: Session, _: KeyView, mapped: list[StoreToken]) -> list[int]:
            records = numbers.load(session, mapped)
            usage.add(session, caller.pk, day, checks=len(queries))
            return [
                lifecycle.reassigned_since(records.get(t.value), since)
                for t, (_, since) in zip(mapped, queries, strict=True)
            ]

        return await self._tokens.run(prepare, act)


def _answer(first_leaf: int, outcomes: list[lifecycle.Outcome], **rest: Any) -> dict[str, Any]:
    """A report's answer: its events' leaves (appended first, in report order), how many
    applied, and what the caller adds (the revocation, its counts, the platforms to wake)."""
    applied = sum(o.applied for o in outcomes)
    return {
        "leaf_indices": list(range(first_leaf, first_leaf + len(outcomes))),
        "applied": applied,
        "superseded": len(outcomes) - applied,
        **rest,
    }
