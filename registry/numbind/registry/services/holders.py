"""Holder operations, always through the holder's carrier: 一证通查 and 一键解绑. No grpc.

Every call carries attestations the calling carrier signed. Beyond the pure checks in
registry.domain.attestation, two need the store: the caller must be the number's current
carrier, and the nonce must be new (it is then kept until the attestation would have
expired anyway). A revocation checks both in its one write transaction. A query checks
everything in a read (`check_query`), then spends the nonces in a short write that checks
the carrier again (`spend_query`); its answer is released only after that write. The
attested token is mapped to the store key first (services.tokenmap): one number, one
carrier, whatever key the carrier tokenised under.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from numbind.protocol.attestation import Attestation
from numbind.protocol.limits import MAX_HOLDER_NUMBERS, MAX_HOLDER_PLATFORMS
from numbind.registry.domain import attestation as attest
from numbind.registry.domain import validate
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.types import (
    EventCause,
    Principal,
    Purpose,
    RevocationScope,
    Role,
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
from numbind.registry.services.fanout_model import AdmittedNumber, MemberRevocation
from numbind.registry.services.holder_orders import order_holder_revocation
from numbind.registry.services.holder_views import (
    UNNAMED,
    NumberView,
    RegistryName,
    RevocationView,
    number_platforms,
    revocation_progress,
)
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import (
    fanout,
    idempotency,
    local_apply,
    log,
    nonces,
    numbers,
    orders,
    principals,
)
from numbind.registry.storage.db import Database, Session

MAX_NUMBERS = MAX_HOLDER_NUMBERS
MAX_PLATFORMS = MAX_HOLDER_PLATFORMS


@dataclass(frozen=True)
class SignedAttestation:
    attestation: bytes
    signature: bytes


@dataclass(frozen=True)
class Admitted:
    """A number the hub admitted for a holder query: attested, served by the caller."""

    attestation: Attestation
    tenure_start_us: int

    @property
    def number(self) -> AdmittedNumber:
        a = self.attestation
        return AdmittedNumber(a.token, a.key_id, self.tenure_start_us)


@dataclass(frozen=True)
class CheckedQuery:
    """A query's attestations after `HolderService.check_query`: everything checked but
    single use. `carrier_key` is the key they were verified under; `views` this store's
    platforms per number, read in the same snapshot as the checks (none at a hub that
    holds no bindings)."""

    admitted: tuple[Admitted, ...]
    signed: tuple[SignedAttestation, ...]
    carrier_key: bytes
    views: list[NumberView]


class HolderService:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        notifier: FeedNotifier,
        deadline_seconds: float,
        policy: attest.Policy,
        *,
        local_bindings: bool = True,
        remote_members: Callable[[], Sequence[str]] = lambda: (),
        registry: RegistryName = UNNAMED,
    ) -> None:
        """`local_bindings`: this registry holds bindings (a federation of one, or a hub
        that is also a binding registry). `remote_members`: the other binding registries;
        a revocation is recorded for each in the fan-out outbox, in its own transaction.
        `registry`: how this registry's platforms are named in holder views."""
        self._db = db
        self._tokens = tokens
        self._notifier = notifier
        self._deadline = deadline_seconds
        self._policy = policy
        self._local = local_bindings
        self._remote_members = remote_members
        self._registry = registry

    @property
    def holds_bindings(self) -> bool:
        return self._local

    @property
    def order_deadline_seconds(self) -> float:
        """How long a platform has to ack an order before it shows OVERDUE."""
        return self._deadline

    # -- attestation checks ---------------------------------------------------------------
    @staticmethod
    def _carrier_key(session: Session, caller: Principal) -> bytes | None:
        return principals.attestation_key(session, caller.pk)

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

    @staticmethod
    def _tenure(session: Session, caller: Principal, token: StoreToken, where: str) -> int | None:
        """The current-carrier check; returns the number's tenure start (None if unknown)."""
        number = numbers.get(session, token)
        if number is None or number.carrier_pk != caller.pk:
            # One answer for both cases: a carrier learns no more of a number that is not
            # its own than that (whether another carrier reported it stays unsaid).
            raise WrongCarrier(
                f"{where}.token: carrier {caller.name} is not the current carrier of this "
                "number: it has not reported it (report it ISSUED, or PORTED_IN, first) or "
                "another carrier serves it now"
            )
        return number.tenure_start_us

    def _spend(self, session: Session, caller: Principal, att: Attestation, where: str) -> None:
        fresh = nonces.claim(
            session,
            caller.pk,
            att.nonce,
            keep_until_us=self._policy.nonce_kept_until_us(att),
            now_us=now_us(),
        )
        if not fresh:
            raise AttestationReplayed(f"{where}.nonce: this attestation was already used")

    def _admit(
        self, session: Session, caller: Principal, att: Attestation, token: StoreToken, where: str
    ) -> int:
        """Current-carrier and single-use checks; returns the tenure start to use."""
        tenure = self._tenure(session, caller, token, where)
        self._spend(session, caller, att, where)
        return tenure or att.tenure_start_us

    # -- 一证通查 -------------------------------------------------------------------------
    async def check_query(
        self, caller: Principal, signed: Sequence[SignedAttestation]
    ) -> CheckedQuery:
        """Every check of a query's attestations but the one that writes: signatures, times,
        one subscriber, current carrier, and nonces not yet used; and, in the same read,
        this store's platforms for each number. Read-only, so it never queues behind a
        writer; `spend_query` then spends the nonces, and nothing may be answered before
        it has."""
        validate.batch_size("attestations", len(signed), MAX_NUMBERS)

        def check(session: Session, view: KeyView) -> CheckedQuery:
            key = self._carrier_key(session, caller)
            atts = self._verified(key, caller, signed)
            admitted = []
            for i, att in enumerate(atts):
                where = f"attestations[{i}]"
                tenure = self._tenure(session, caller, self._map(view, att, where), where)
                if nonces.used(session, caller.pk, att.nonce, now_us=now_us()):
                    raise AttestationReplayed(f"{where}.nonce: this attestation was already used")
                admitted.append(Admitted(att, tenure or att.tenure_start_us))
            assert key is not None  # _verified refuses a carrier without one
            views = self.local_views(session, view, admitted)
            return CheckedQuery(tuple(admitted), tuple(signed), key, views)

        return await self._tokens.act(check, write=False)

    async def spend_query(self, caller: Principal, checked: CheckedQuery) -> None:
        """Spend the nonces `check_query` found unused, in one transaction: raises
        AttestationReplayed if another call spent one meanwhile, WrongCarrier if the number
        changed carrier, and verifies again if the carrier's key changed (so the nonce is
        spent only under the key and carrier in force when it is written)."""

        def spend(session: Session, view: KeyView) -> None:
            key = self._carrier_key(session, caller)
            if key != checked.carrier_key:
                self._verified(key, caller, checked.signed)
            for i, a in enumerate(checked.admitted):
                where = f"attestations[{i}]"
                self._tenure(session, caller, self._map(view, a.attestation, where), where)
                self._spend(session, caller, a.attestation, where)

        await self._tokens.act(spend)

    def _verified(
        self, key: bytes | None, caller: Principal, signed: Sequence[SignedAttestation]
    ) -> list[Attestation]:
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
        return atts

    def local_views(
        self, session: Session | None, view: KeyView | None, admitted: Sequence[Admitted]
    ) -> list[NumberView]:
        """This store's platforms for each admitted number; a hub that holds no bindings by
        design has none, and reads nothing (`session` and `view` may then be None)."""
        out = []
        for i, a in enumerate(admitted):
            att = a.attestation
            platforms = []
            if self._local:
                assert session is not None and view is not None
                token = self._map(view, att, f"attestations[{i}]")
                platforms = number_platforms(session, token, a.tenure_start_us, self._registry)
            out.append(NumberView(att.token, att.key_id, a.tenure_start_us, platforms))
        return out

    # -- 一键解绑 -------------------------------------------------------------------------
    @staticmethod
    def validate_revocation(request_id: str, scope: int, platform_ids: Sequence[str]) -> None:
        validate.request_id(request_id)
        HolderService.validate_scope(scope, platform_ids)

    @staticmethod
    def validate_scope(scope: int, platform_ids: Sequence[str]) -> None:
        """The revocation's scope and platforms (also what a member checks of its hub's)."""
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

    async def request_revocation(
        self,
        caller: Principal,
        request_id: str,
        body_hash: bytes,
        signed: SignedAttestation,
        scope: int,
        platform_ids: Sequence[str],
        *,
        remote_platforms: set[str] | None = None,
    ) -> tuple[str, int]:
        """`remote_platforms`: in a federation, the ids of `platform_ids` the other
        binding registries hold (None: not every member answered, so none is refused).
        The caller has checked the request with `validate_revocation` (FederatedHolders
        does, before it asks the members about `platform_ids`)."""

        def first(
            session: Session, view: KeyView, att: Attestation, token: StoreToken
        ) -> dict[str, Any]:
            tenure = self._admit(session, caller, att, token, "attestation")
            wanted: set[int] | None = None
            members = list(self._remote_members())
            # In a federation the platforms sit at the members: each acts on the ids it
            # holds, and an id is unknown only if neither this store nor any member holds
            # it (`remote_platforms`; None when a member did not say, so none is refused).
            if platform_ids:
                by_name = principals.pks_by_name(session, Role.PLATFORM, platform_ids)
                known: set[str] | None = set(by_name)
                if members:
                    known = None if remote_platforms is None else set(by_name) | remote_platforms
                for i, pid in enumerate(platform_ids):
                    if known is not None and pid not in known:
                        where = " in any registry of the federation" if members else ""
                        raise NotFound(f"platform_ids[{i}]: no platform {pid!r}{where}")
                wanted = set(by_name.values())
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
            n_orders, platforms = (
                order_holder_revocation(
                    session, rid, token, scope, tenure, wanted, self._deadline, created=created
                )
                if self._local
                else (0, set())
            )
            log.append(
                session,
                log_record.revocation(
                    session, rid, EventCause.HOLDER_REQUEST, caller.pk, caller.name, created
                ),
            )
            if members:
                request = MemberRevocation(
                    rid, AdmittedNumber(att.token, att.key_id, tenure), scope, tuple(platform_ids)
                )
                fanout.add(session, rid, members, request.to_json(), now_us())
            return {"revocation_id": rid, "orders": n_orders, "platforms": sorted(platforms)}

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
        validate.revocation_id("revocation_id", revocation_id)

        def read(session: Session) -> RevocationView:
            row = orders.revocation(session, revocation_id)
            if row is None or row.carrier_pk != caller.pk:
                raise NotFound(f"revocation_id: no revocation {revocation_id} of yours")
            out = revocation_progress(session, revocation_id, self._registry)
            # A report's orders are created after it commits (services.local_apply): until
            # the last exists, the answer says more are coming.
            return RevocationView(
                row.id,
                row.cause,
                row.created_us,
                out,
                leaves=log.revocation_leaves(session, revocation_id),
                orders_pending=local_apply.pending(session, row) is not None,
            )

        return await self._db.run(read, write=False)
