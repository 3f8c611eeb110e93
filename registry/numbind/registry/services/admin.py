"""Admin operations: principals, token keys, statistics. No grpc here.

Rotation is the one place both halves of the token design meet: the token service (KeyRing)
makes the new key and computes Delta = k_new / k_old; the store side receives only Delta
(storage.keymap.begin_rekey), in the same transaction, and re-keys in the background.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain import validate
from numbind.registry.domain.keymap import RekeyStatus
from numbind.registry.domain.types import LIVE_BINDING_STATES, OrderState, Principal, Role, now_us
from numbind.registry.errors import InvalidArgument
from numbind.registry.keys import KeyRing, TokenKey
from numbind.registry.pki import CertificateAuthority, PrincipalId
from numbind.registry.services.directory import Directory
from numbind.registry.services.rekey import RekeyRunner
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import idempotency, keymap, principals, usage
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow, NumberRow, OrderRow, PrincipalRow
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Stats:
    platforms: int
    carriers: int
    active_bindings: int
    numbers: int
    orders: dict[OrderState, int]
    usage: list[tuple[str, str, int, int]]
    rekey: RekeyStatus | None


class AdminService:
    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        directory: Directory,
        ca: CertificateAuthority | None,
        tokens: TokenMapper,
        rekeyer: RekeyRunner,
    ) -> None:
        self._db = db
        self._keys = keys
        self._directory = directory
        self._ca = ca
        self._tokens = tokens
        self._rekeyer = rekeyer

    async def register(
        self,
        caller: Principal,
        request_id: str,
        body_hash: bytes,
        role: str,
        name: str,
        display_name: str,
        category: str,
        csr_pem: bytes,
        attestation_key: bytes | None,
    ) -> dict[str, Any]:
        validate.request_id(request_id)
        validate.principal_id(f"{role}_id", name)
        if not display_name.strip():
            raise InvalidArgument("display_name: got '', want a name shown to holders")
        if attestation_key is not None and len(attestation_key) != 32:
            raise InvalidArgument(
                f"attestation_public_key: got {len(attestation_key)} bytes, want 32"
            )
        if self._ca is None:
            raise InvalidArgument("this registry has no CA key loaded; register locally")
        ca = self._ca
        try:
            cert = ca.sign_csr(csr_pem, PrincipalId(role, name))  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidArgument(f"csr_pem: {exc}") from None

        def act(session: Session) -> dict[str, Any]:
            def first() -> dict[str, Any]:
                principals.register(
                    session,
                    role,
                    name,
                    display_name=display_name,
                    category=category,
                    attestation_key=attestation_key,
                )
                return {"uri": f"spiffe://numbind/{role}/{name}", "cert": cert.decode()}

            return idempotency.once(
                session, caller.pk, f"Register{role}", request_id, body_hash, first
            )

        return await self._db.run(act)

    async def set_suspended(self, role: str, name: str, suspended: bool) -> None:
        if role not in (Role.PLATFORM, Role.CARRIER):
            raise InvalidArgument(f"role: got {role!r}, want platform or carrier")
        await self._db.run(lambda s: principals.set_suspended(s, role, name, suspended))
        self._directory.invalidate()

    async def set_attestation_key(self, name: str, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidArgument(f"attestation_public_key: got {len(key)} bytes, want 32")
        await self._db.run(lambda s: principals.set_attestation_key(s, name, key))

    async def list_principals(self) -> list[PrincipalRow]:
        return await self._db.run(principals.list_all, write=False)

    def list_keys(self) -> list[TokenKey]:
        return self._keys.all()

    async def rotate_key(
        self, caller: Principal, request_id: str
    ) -> tuple[TokenKey, RekeyStatus | None]:
        """A new active key, and the store re-key it starts; refused while one runs."""
        validate.request_id(request_id)
        body = hashlib.sha256(b"RotateKey").digest()

        def rotate(session: Session) -> dict[str, Any]:
            # Locks the key map first: two rotations at once queue here, and the second is
            # refused (naming the first's progress) before it makes a key.
            keymap.require_no_rekey(session)
            rotation = self._keys.create_active(session)
            if rotation.previous_key_id is None or rotation.delta is None:
                keymap.ensure_store_key(session, rotation.key.key_id)
            else:
                keymap.begin_rekey(
                    session,
                    rotation.previous_key_id,
                    rotation.key.key_id,
                    rotation.delta,
                    rotation.key.created_us,
                )
            return {"key_id": rotation.key.key_id}

        def act(session: Session) -> dict[str, Any]:
            return idempotency.once(
                session, caller.pk, "RotateKey", request_id, body, lambda: rotate(session)
            )

        result = await self._db.run(act)
        self._keys.reload()
        self._tokens.invalidate()
        self._rekeyer.wake()
        key = next(k for k in self._keys.all() if k.key_id == result["key_id"])
        return key, await self._tokens.latest_rekey()

    async def retire_key(self, key_id: str) -> None:
        """Stop evaluating under an old key and forget its delta (refused mid re-key)."""

        def act(session: Session) -> None:
            keymap.forget_key(session, key_id)
            KeyRing.retire(session, key_id)

        await self._db.run(act)
        self._keys.reload()
        self._tokens.invalidate()

    def export_key(self, key_id: str) -> bytes:
        return self._keys.export(key_id)

    async def stats(self) -> Stats:
        def read(session: Session) -> Stats:
            roles = dict(
                session.execute(
                    select(PrincipalRow.role, func.count()).group_by(PrincipalRow.role)
                ).all()
            )
            bindings = session.scalar(
                select(func.count())
                .select_from(BindingRow)
                .where(BindingRow.state.in_([int(s) for s in LIVE_BINDING_STATES]))
            )
            numbers = session.scalar(select(func.count()).select_from(NumberRow))
            now = now_us()
            orders: dict[OrderState, int] = {s: 0 for s in OrderState}
            late = func.sum(case((OrderRow.deadline_us < now, 1), else_=0))
            for state, overdue, count in session.execute(
                select(OrderRow.state, late, func.count()).group_by(OrderRow.state)
            ):
                if state in (OrderState.PENDING, OrderState.DELIVERED):
                    orders[OrderState.OVERDUE] += int(overdue or 0)
                    count -= int(overdue or 0)
                orders[OrderState(state)] += count
            names = {r.pk: r for r in principals.list_all(session)}
            use = [
                (names[pk].role, names[pk].name, t, c)
                for pk, (t, c) in sorted(usage.totals(session).items())
                if pk in names
            ]
            return Stats(
                roles.get(Role.PLATFORM, 0),
                roles.get(Role.CARRIER, 0),
                bindings or 0,
                numbers or 0,
                orders,
                use,
                keymap.latest_rekey(session),
            )

        return await self._db.run(read, write=False)
