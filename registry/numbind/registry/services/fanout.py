"""The hub's holder fan-out: one attestation check, every member asked in parallel. No grpc.

A holder's 一证通查 and 一键解绑 arrive at the hub (the lifecycle authority), the only
registry that knows which carrier serves a number. `FederatedHolders` checks the
attestation there once (HolderService), then asks each binding registry (a `MemberClient`)
under one deadline; a query spends its nonce while the members answer, and is answered
only once the nonce is spent. A member that does not answer in time is listed as
unavailable with the reason, never silently left out. A revocation is recorded for every
member in the hub's outbox in the same transaction as the revocation itself, delivered at
once, and delivered later by `deliver_due` to a member that missed it (members create its
orders once, by revocation id). A federation of one has no members: everything stays
local, no RPC.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from numbind.registry.domain.types import EventCause, Principal, now_us
from numbind.registry.services.fanout_model import AdmittedNumber, MemberRevocation
from numbind.registry.services.holder_views import (
    NumberView,
    PlatformGroup,
    PlatformProgress,
    RegistryName,
    RevocationView,
    Unavailable,
)
from numbind.registry.services.holders import HolderService, SignedAttestation
from numbind.registry.storage import fanout
from numbind.registry.storage.db import Database
from numbind.registry.storage.fanout import OutboxEntry

__all__ = [
    "FederatedHolders",
    "MemberClient",
    "MemberDirectory",
    "MemberUnavailable",
    "NoMembers",
    "RetryPolicy",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class MemberUnavailable(Exception):
    """A member could not answer; `reason` is safe to show a carrier (no internals)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MemberClient(Protocol):
    """One binding-registry member, as the hub calls it.

    Contract: each call either returns the member's answer or raises MemberUnavailable
    with a reason; it gives up after `deadline_seconds`. `revoke` is idempotent by
    revocation id at the member (a repeat creates nothing and returns the first count).
    """

    @property
    def registry(self) -> RegistryName: ...

    async def query(
        self, numbers: Sequence[AdmittedNumber], deadline_seconds: float
    ) -> list[list[PlatformGroup]]: ...

    async def revoke(self, request: MemberRevocation, deadline_seconds: float) -> int: ...

    async def platforms(self, platform_ids: Sequence[str], deadline_seconds: float) -> set[str]:
        """Those of `platform_ids` that are this member's platforms."""
        ...

    async def progress(
        self, revocation_id: str, deadline_seconds: float
    ) -> list[PlatformProgress] | None: ...


class MemberDirectory(Protocol):
    """The binding registries other than this one, from the installed manifest.

    Contract: `members()` is cheap (no I/O) and reflects the newest installed manifest;
    `member(id)` returns None for an id that is no longer a binding registry."""

    def members(self) -> Sequence[MemberClient]: ...

    def member(self, member_id: str) -> MemberClient | None: ...


class NoMembers:
    """A federation of one: no other registry to ask."""

    def members(self) -> Sequence[MemberClient]:
        return ()

    def member(self, member_id: str) -> MemberClient | None:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off for outbox deliveries a member missed: base * 2^attempts, capped, +-20%."""

    base_seconds: float = 0.5
    max_seconds: float = 30.0

    def next_attempt_us(self, attempts: int) -> int:
        delay = min(self.max_seconds, self.base_seconds * 2 ** min(attempts, 30))
        return now_us() + int(delay * random.uniform(0.8, 1.2) * 1_000_000)


@dataclass(frozen=True)
class _Outcome:
    member: RegistryName
    value: object = None
    reason: str | None = None


class FederatedHolders:
    def __init__(
        self,
        db: Database,
        holders: HolderService,
        directory: MemberDirectory,
        deadline_seconds: float,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._db = db
        self._holders = holders
        self._directory = directory
        self._deadline = deadline_seconds
        self._retry = retry
        # (revocation id, member id) -> the delivery under way, which a second pass (the
        # retry loop, or a carrier's request) joins instead of starting another.
        self._in_flight: dict[tuple[str, str], asyncio.Future[_Outcome]] = {}
        self._wake = asyncio.Event()

    @property
    def order_deadline_seconds(self) -> float:
        return self._holders.order_deadline_seconds

    @property
    def deadline_seconds(self) -> float:
        return self._deadline

    async def _call(
        self, member: MemberClient, call: Callable[[MemberClient], Awaitable[T]]
    ) -> _Outcome:
        """`call` on `member`, cut off at the deadline; a failure becomes a reason."""
        try:
            value = await asyncio.wait_for(call(member), self._deadline)
        except TimeoutError:
            return _Outcome(member.registry, reason=f"no answer within {self._deadline:g} s")
        except MemberUnavailable as exc:
            return _Outcome(member.registry, reason=exc.reason)
        except Exception:
            log.exception("fan-out to member %s failed", member.registry.id)
            return _Outcome(member.registry, reason="the hub could not ask it (see the hub's log)")
        return _Outcome(member.registry, value)

    async def _ask(
        self,
        members: Sequence[MemberClient],
        call: Callable[[MemberClient], Awaitable[T]],
    ) -> list[_Outcome]:
        """`call` on every member at once, each cut off at the deadline."""
        return list(await asyncio.gather(*(self._call(m, call) for m in members)))

    # -- 一证通查 -------------------------------------------------------------------------
    async def query(
        self, caller: Principal, signed: Sequence[SignedAttestation]
    ) -> tuple[list[NumberView], tuple[Unavailable, ...]]:
        checked = await self._holders.check_query(caller, signed)
        numbers = [a.number for a in checked.admitted]
        members = self._directory.members()
        local = checked.views
        # Single use is the one check left, and spending the nonces is the query's only
        # write: it runs beside the members' reads instead of before them. Nothing is
        # answered until it has succeeded: a replay that raced past check_query is
        # refused here, and what the members said is dropped.
        spend = asyncio.ensure_future(self._holders.spend_query(caller, checked))
        try:
            outcomes = await self._ask(members, lambda m: m.query(numbers, self._deadline))
        finally:
            await spend
        unavailable: list[Unavailable] = []
        for outcome in outcomes:
            if outcome.reason is not None:
                unavailable.append(Unavailable(outcome.member, outcome.reason))
                continue
            per_number = outcome.value
            assert isinstance(per_number, list)
            if len(per_number) != len(local):
                unavailable.append(
                    Unavailable(outcome.member, "answered for another number of numbers")
                )
                continue
            for view, groups in zip(local, per_number, strict=True):
                view.platforms.extend(groups)
        if members:
            for view in local:
                view.platforms.sort(key=lambda g: (g.tenure_class, g.display_name))
        return local, tuple(unavailable)

    # -- 一键解绑 -------------------------------------------------------------------------
    async def request_revocation(
        self,
        caller: Principal,
        request_id: str,
        body_hash: bytes,
        signed: SignedAttestation,
        scope: int,
        platform_ids: Sequence[str],
    ) -> tuple[str, int, tuple[Unavailable, ...]]:
        HolderService.validate_revocation(request_id, scope, platform_ids)
        members = self._directory.members()
        held: set[str] | None = None
        if members and platform_ids:
            # The hub holds no platform: the members say which ids they hold, so that an
            # id none of them holds is refused (NOT_FOUND) as a single registry refuses it.
            # A member that does not answer may hold it: then nothing is refused for it.
            held = set()
            for outcome in await self._ask(
                members, lambda m: m.platforms(platform_ids, self._deadline)
            ):
                if outcome.reason is not None or not isinstance(outcome.value, set):
                    held = None
                    break
                held |= outcome.value
        rid, local_orders = await self._holders.request_revocation(
            caller, request_id, body_hash, signed, scope, platform_ids, remote_platforms=held
        )
        if not members:
            return rid, local_orders, ()
        entries = await self._entries(rid)
        tried = await self._deliver([e for e in entries if not e.delivered])
        orders = local_orders
        pending: list[Unavailable] = []
        for e in entries:
            now = tried.get(e.member_id)
            if e.delivered:
                orders += e.orders or 0
            elif now is not None and isinstance(now.value, int):
                orders += now.value
            else:
                pending.append(self._pending(e, now.reason if now is not None else None))
        return rid, orders, tuple(pending)

    async def get_revocation(self, caller: Principal, revocation_id: str) -> RevocationView:
        view = await self._holders.get_revocation(caller, revocation_id)
        members = self._directory.members()
        if not members:
            return view
        entries = {e.member_id: e for e in await self._entries(revocation_id)}
        unavailable = [self._pending(e) for e in entries.values() if not e.delivered]
        # Members the revocation never went through the outbox for (a reissue's orders
        # reach them by replication) are asked too.
        ask = [
            m for m in members if m.registry.id not in entries or entries[m.registry.id].delivered
        ]
        platforms = list(view.platforms)
        # A reissue's or deactivation's revocation reaches members by replication, under
        # the hub's id: a member that does not know it yet has not applied the event.
        replicated = view.cause != EventCause.HOLDER_REQUEST
        for outcome in await self._ask(ask, lambda m: m.progress(revocation_id, self._deadline)):
            if outcome.reason is not None:
                unavailable.append(Unavailable(outcome.member, outcome.reason))
            elif isinstance(outcome.value, list):
                platforms.extend(outcome.value)
            elif replicated:
                unavailable.append(
                    Unavailable(
                        outcome.member,
                        "has not applied this lifecycle event yet (replication is behind)",
                    )
                )
        return replace(view, platforms=platforms, unavailable=tuple(unavailable))

    def _pending(self, entry: OutboxEntry, reason: str | None = None) -> Unavailable:
        """`reason`: why the delivery just tried failed (else the entry's last error)."""
        member = self._directory.member(entry.member_id)
        name = member.registry if member is not None else RegistryName(entry.member_id, "")
        why = reason or entry.last_error or "not reached yet"
        return Unavailable(name, f"not delivered yet, the hub retries ({why})")

    async def _entries(self, revocation_id: str) -> list[OutboxEntry]:
        return await self._db.run(lambda s: fanout.for_revocation(s, revocation_id), write=False)

    # -- delivery -------------------------------------------------------------------------
    async def _deliver(self, entries: Sequence[OutboxEntry]) -> dict[str, _Outcome]:
        """Deliver each entry to its member in parallel; record success (value: the
        member's order count) or the next try (reason). Returns the outcome per member id.

        An entry another pass is delivering already is not sent twice: its outcome is
        awaited. (Left to the other pass, a carrier's request that raced the retry loop
        answered 0 orders and listed a member as pending that had its orders.) Deliveries
        are shielded: a caller that goes away (a cancelled request) does not cut one off
        between the member's answer and the hub's record of it."""
        waits: list[asyncio.Future[_Outcome]] = []
        for e in entries:
            key = (e.revocation_id, e.member_id)
            delivery = self._in_flight.get(key)
            if delivery is None:
                delivery = asyncio.ensure_future(self._deliver_one(e))
                self._in_flight[key] = delivery
                delivery.add_done_callback(functools.partial(self._delivered, key))
            waits.append(delivery)
        results = await asyncio.gather(*(asyncio.shield(w) for w in waits))
        return {e.member_id: r for e, r in zip(entries, results, strict=True)}

    def _delivered(self, key: tuple[str, str], _: asyncio.Future[_Outcome]) -> None:
        self._in_flight.pop(key, None)

    async def _deliver_one(self, entry: OutboxEntry) -> _Outcome:
        member = self._directory.member(entry.member_id)
        if member is None:
            outcome = _Outcome(
                RegistryName(entry.member_id, ""),
                reason="no longer a binding registry of this federation",
            )
        else:
            outcome = await self._call(
                member,
                lambda m: m.revoke(MemberRevocation.from_json(entry.request), self._deadline),
            )
        if isinstance(outcome.value, int):
            count = outcome.value
            await self._db.run(
                lambda s: fanout.mark_delivered(
                    s, entry.revocation_id, entry.member_id, count, now_us()
                )
            )
            log.info(
                "revocation %s delivered to member %s (%d orders, attempt %d)",
                entry.revocation_id,
                entry.member_id,
                count,
                entry.attempts + 1,
            )
            return outcome
        reason = outcome.reason or "no answer"
        next_us = self._retry.next_attempt_us(entry.attempts)
        await self._db.run(
            lambda s: fanout.mark_failed(s, entry.revocation_id, entry.member_id, reason, next_us)
        )
        self._wake.set()
        return outcome

    async def deliver_due(self, limit: int = 100) -> int:
        """One pass of the retry loop: deliver the entries whose next attempt is due."""
        entries = await self._db.run(lambda s: fanout.due(s, now_us(), limit), write=False)
        tried = await self._deliver(entries)
        return sum(1 for o in tried.values() if isinstance(o.value, int))

    async def run_retries(self, stopping: asyncio.Event) -> None:
        """Until `stopping`: deliver what members missed, sleeping until the next is due."""
        while not stopping.is_set():
            try:
                await self.deliver_due()
                next_us = await self._db.run(fanout.next_due_us, write=False)
            except Exception:
                log.exception("fan-out retry pass failed; trying again shortly")
                next_us = now_us() + int(self._retry.max_seconds * 1_000_000)
            wait = (
                self._retry.max_seconds
                if next_us is None
                else max(0.05, (next_us - now_us()) / 1_000_000)
            )
            self._wake.clear()
            stop = asyncio.create_task(stopping.wait())
            wake = asyncio.create_task(self._wake.wait())
            await asyncio.wait({stop, wake}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for task in (stop, wake):
                task.cancel()
