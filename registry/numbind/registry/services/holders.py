"""Holder operations, always through the holder's carrier: 一证通查 and 一键解绑. No grpc.

Every call carries attestations the calling carrier signed. Beyond the pure checks in
registry.domain.attestation, two need the store and happen in the call's transaction:
the caller must be the number's current carrier, and the nonce must be new (it is then
kept until the attestation would have expired anyway). The attested token is mapped to
the store key first (services.tokenmap): one number, one carrier, whatever key the
carrier tokenised under.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from numbind.protocol.attestation import Attestation
from numbind.protocol.limits import MAX_HOLDER_NUMBERS, MAX_HOLDER_PLATFORMS
from numbind.registry.domain import attestation as attest
from numbind.registry.domain import validate
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.types import (
    BindingState,
    EventCause,
    EventKind,
    OrderState,
    Principal,
    Purpose,
    RevocationScope,
    Role,
    TenureClass,
    now_us,
)
from numbind.registry.errors import (
    AttestationError,
    AttestationReplayed,
    InvalidArgument,
    NotFound,
    WrongCarrier,
)
from numbind.registry.services import log_record
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import (
    bindings,
    idempotency,
    log,
    nonces,
    numbers,
    orders,
    principals,
)
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Database, Session

MAX_NUMBERS = MAX_HOLDER_NUMBERS
MAX_PLATFORMS = MAX_HOLDER_PLATFORMS


@dataclass(frozen=True)
class SignedAttestation:
    attestation: bytes
    signature: bytes


@dataclass
class PlatformGroup:
    platform_id: str
    display_name: str
    category: str
    tenure_class: TenureClass
    active_count: int = 0
    earliest_us: int = 0
    latest_us: int = 0
    open_revocation: tuple[str, int] | None = None


@dataclass
class NumberView:
    token: bytes
    key_id: str
    tenure_start_us: int
    platforms: list[PlatformGroup] = field(default_factory=list)


@dataclass(frozen=True)
class PlatformProgress:
    platform_id: str
    display_name: str
    category: str
    state: OrderState
    orders: int
    done: int
    rejected: int
    reason: str
    updated_us: int | None
    # The platform's orders in this revocation, oldest first, and their latest deadline.
    order_ids: tuple[str, ...] = ()
    deadline_us: int | None = None


@dataclass(frozen=True)
class RevocationView:
    revocation_id: str
    cause: EventCause
    created_us: int
    platforms: list[PlatformProgress]
    # (leaf index, kind, ref) of its trigger, orders and outcomes in the verifiable log.
    leaves: list[tuple[int, str, str]] = field(default_factory=list)


class HolderService:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        notifier: FeedNotifier,
        deadline_seconds: float,
        policy: attest.Policy,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._notifier = notifier
        self._deadline = deadline_seconds
        self._policy = policy

    @property
    def order_deadline_seconds(self) -> float:
        """How long a platform has to ack an order before it shows OVERDUE."""
        return self._deadline

    # -- attestation checks ---------------------------------------------------------------
    @staticmethod
    def _carrier_key(session: Session, caller: Principal) -> bytes | None:
        row = principals.find(session, Role.CARRIER, caller.name)
        return row.attestation_key if row else None

    def _verify(
        self,
        key: bytes | None,
        caller: Principal,
        signed: SignedAttestation,
        purpose: Purpose,
        where: str,
    ) -> Attestation:
        try:
            return attest.verify(
                signed.attestation,
                signed.signature,
                caller_carrier_id=caller.name,
                carrier_key=key,
                purpose=int(purpose),
                now_us=now_us(),
                max_lifetime_seconds=self._policy.max_lifetime_seconds,
                skew_seconds=self._policy.clock_skew_seconds,
            )
        except AttestationError as exc:
            raise type(exc)(f"{where}: {exc.message}") from None

    @staticmethod
    def _map(view: KeyView, att: Attestation, where: str) -> StoreToken:
        # The attestation's own field names: its token and key id sit side by side.
        try:
            return view.map(f"{where}.token", att.key_id, att.token)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message.replace(".token.key_id", ".key_id", 1)) from None

    def _admit(
        self, session: Session, caller: Principal, att: Attestation, token: StoreToken, where: str
    ) -> int:
        """Current-carrier and single-use checks; returns the tenure start to use."""
        number = numbers.get(session, token)
        if number is None or number.carrier_pk != caller.pk:
            raise WrongCarrier(
                f"{where}.token: carrier {caller.name} is not the current carrier of this number"
            )
        fresh = nonces.claim(
            session,
            caller.pk,
            att.nonce,
            keep_until_us=self._policy.nonce_kept_until_us(att),
            now_us=now_us(),
        )
        if not fresh:
            raise AttestationReplayed(f"{where}.nonce: this attestation was already used")
        return number.tenure_start_us or att.tenure_start_us

    # -- 一证通查 -------------------------------------------------------------------------
    async def query(
        self, caller: Principal, signed: Sequence[SignedAttestation]
    ) -> list[NumberView]:
        validate.batch_size("attestations", len(signed), MAX_NUMBERS)

        def admit(session: Session, view: KeyView) -> list[tuple[Attestation, int]]:
            key = self._carrier_key(session, caller)
            atts = [
                self._verify(key, caller, s, Purpose.QUERY, f"attestations[{i}]")
                for i, s in enumerate(signed)
            ]
            for i, att in enumerate(atts):
                if att.subject != atts[0].subject:
                    raise InvalidArgument(
                        f"attestations[{i}].subject: differs from attestations[0]; one query "
                        "covers the numbers of one subscriber"
                    )
            return [
                (
                    att,
                    self._admit(
                        session,
                        caller,
                        att,
                        self._map(view, att, f"attestations[{i}]"),
                        f"attestations[{i}]",
                    ),
                )
                for i, att in enumerate(atts)
            ]

        # The write is only the single-use check; the view is read outside it, so queries
        # queue behind other writers for as short a time as possible.
        admitted = await self._tokens.act(admit)

        def read(session: Session, view: KeyView) -> list[NumberView]:
            return [
                self._view(session, att, self._map(view, att, f"attestations[{i}]"), tenure)
                for i, (att, tenure) in enumerate(admitted)
            ]

        return await self._tokens.act(read, write=False)

    def _view(
        self, session: Session, att: Attestation, token: StoreToken, tenure: int
    ) -> NumberView:
        live = bindings.bindings_for_token(session, token)
        names = principals.by_pks(session, {b.platform_pk for b in live})
        open_ = orders.open_orders_for_bindings(session, [b.pk for b in live], now_us())
        groups: dict[tuple[int, TenureClass], PlatformGroup] = {}
        for b in sorted(live, key=lambda b: b.bound_us):
            cls = TenureClass.PRE_TENURE if b.bound_us < tenure else TenureClass.IN_TENURE
            p = names[b.platform_pk]
            g = groups.setdefault(
                (b.platform_pk, cls),
                PlatformGroup(p.name, p.display_name, p.category, cls, earliest_us=b.bound_us),
            )
            g.active_count += 1
            g.latest_us = b.bound_us
            if b.pk in open_:
                g.open_revocation = open_[b.pk]
        ordered = sorted(groups.values(), key=lambda g: (g.tenure_class, g.display_name))
        return NumberView(att.token, att.key_id, tenure, ordered)

    # -- 一键解绑 -------------------------------------------------------------------------
    async def request_revocation(
        self,
        caller: Principal,
        request_id: str,
        body_hash: bytes,
        signed: SignedAttestation,
        scope: int,
        platform_ids: Sequence[str],
    ) -> tuple[str, int]:
        validate.request_id(request_id)
        if scope not in RevocationScope._value2member_map_:
            raise InvalidArgument(f"scope: got {scope}, want ALL_PRE_TENURE, PLATFORMS or ALL")
        if scope == RevocationScope.PLATFORMS or platform_ids:
            if scope == RevocationScope.ALL:
                raise InvalidArgument(
                    "platform_ids: not allowed with scope ALL; want PLATFORMS or ALL_PRE_TENURE"
                )
            validate.batch_size("platform_ids", len(platform_ids), MAX_PLATFORMS)
        for i, pid in enumerate(platform_ids):
            validate.principal_id(f"platform_ids[{i}]", pid)

        def first(
            session: Session, view: KeyView, att: Attestation, token: StoreToken
        ) -> dict[str, Any]:
            tenure = self._admit(session, caller, att, token, "attestation")
            wanted: set[int] | None = None
            if platform_ids:
                by_name = principals.pks_by_name(session, Role.PLATFORM, platform_ids)
                for i, pid in enumerate(platform_ids):
                    if pid not in by_name:
                        raise NotFound(f"platform_ids[{i}]: no platform {pid!r}")
                wanted = set(by_name.values())
            in_scope = [
                b
                for b in bindings.bindings_for_token(session, token)
                if (scope != RevocationScope.ALL_PRE_TENURE or b.bound_us < tenure)
                and (wanted is None or b.platform_pk in wanted)
            ]
            targets = _to_ask(session, in_scope)
            rid = orders.new_revocation(
                session,
                EventCause.HOLDER_REQUEST,
                caller.pk,
                token=token.value,
                key_id=view.store_key_id,
                subject=att.subject,
                scope=scope,
            )
            created: list[tuple[str, orders.NewOrder]] = []
            platforms = orders.append(
                session,
                rid,
                [
                    orders.NewOrder(b, EventKind.REVOKE, EventCause.HOLDER_REQUEST, tenure)
                    for b in targets
                ],
                self._deadline,
                created=created,
            )
            log.append(
                session,
                log_record.revocation(
                    session, rid, EventCause.HOLDER_REQUEST, caller.pk, caller.name, created
                ),
            )
            return {"revocation_id": rid, "orders": len(targets), "platforms": sorted(platforms)}

        def act(session: Session, view: KeyView) -> dict[str, Any]:
            att = self._verify(
                self._carrier_key(session, caller), caller, signed, Purpose.REVOKE, "attestation"
            )
            token = self._map(view, att, "attestation")
            # The attestation is a credential, fresh on every try (new nonce, new times); what
            # makes two calls the same request is what they ask for: the scope (in
            # body_hash) for the attested number and subscriber. A resubmitted form thus gets
            # its first answer instead of a conflict, and a replayed nonce is still refused.
            same = hashlib.sha256(body_hash + att.token + att.subject.encode()).digest()
            return idempotency.once(
                session,
                caller.pk,
                "RequestRevocation",
                request_id,
                same,
                lambda: first(session, view, att, token),
            )

        result = await self._tokens.act(act)
        self._notifier.notify(result["platforms"])
        return str(result["revocation_id"]), int(result["orders"])

    async def get_revocation(self, caller: Principal, revocation_id: str) -> RevocationView:
        if not re.fullmatch(r"[0-9a-f-]{36}", revocation_id):
            raise InvalidArgument(f"revocation_id: got {revocation_id[:40]!r}, want a UUID")

        def read(session: Session) -> RevocationView:
            row = orders.revocation(session, revocation_id)
            if row is None or row.carrier_pk != caller.pk:
                raise NotFound(f"revocation_id: no revocation {revocation_id} of yours")
            rows = orders.progress(session, revocation_id, now_us())
            names = principals.by_pks(session, {r.platform_pk for r in rows})
            ids = orders.order_ids(session, revocation_id)
            out = []
            for r in rows:
                if r.pending:
                    state = OrderState.PENDING
                elif r.delivered:
                    state = OrderState.DELIVERED
                elif r.overdue:
                    state = OrderState.OVERDUE
                elif r.rejected:
                    state = OrderState.REJECTED
                else:
                    state = OrderState.DONE
                p = names[r.platform_pk]
                out.append(
                    PlatformProgress(
                        p.name,
                        p.display_name,
                        p.category,
                        state,
                        r.orders,
                        r.done,
                        r.rejected,
                        r.reason if r.rejected else "",
                        r.updated_us,
                        tuple(ids.get(r.platform_pk, ())),
                        r.deadline_us,
                    )
                )
            return RevocationView(
                row.id,
                EventCause(row.cause),
                row.created_us,
                out,
                log.revocation_leaves(session, revocation_id),
            )

        return await self._db.run(read, write=False)


def _to_ask(session: Session, in_scope: list[StoredBinding]) -> list[StoredBinding]:
    """The bindings in scope a new revocation orders: the active ones, and those whose
    open order is past its deadline (asked again). One whose order is still within its
    deadline is left to it: asking twice at once would only double the platform's work."""
    revoking = [b.pk for b in in_scope if b.state == BindingState.REVOKING]
    open_ = orders.open_orders_for_bindings(session, revoking, now_us()) if revoking else {}
    return [
        b
        for b in in_scope
        if b.state == BindingState.ACTIVE
        or (b.pk in open_ and open_[b.pk][1] == int(OrderState.OVERDUE))
    ]
