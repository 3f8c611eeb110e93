"""Admin operations: principals, token keys, statistics. No grpc here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain import validate
from numbind.registry.domain.types import LIVE_BINDING_STATES, OrderState, Principal, Role, now_us
from numbind.registry.errors import InvalidArgument
from numbind.registry.keys import KeyRing, TokenKey
from numbind.registry.pki import CertificateAuthority, PrincipalId
from numbind.registry.services.directory import Directory
from numbind.registry.storage import idempotency, principals, usage
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


class AdminService:
    def __init__(
        self, db: Database, keys: KeyRing, directory: Directory, ca: CertificateAuthority | None
    ) -> None:
        self._db = db
        self._keys = keys
        self._directory = directory
        self._ca = ca

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

    async def rotate_key(self, caller: Principal, request_id: str) -> TokenKey:
        validate.request_id(request_id)
        body = hashlib.sha256(b"RotateKey").digest()

        def act(session: Session) -> dict[str, Any]:
            return idempotency.once(
                session,
                caller.pk,
                "RotateKey",
                request_id,
                body,
                lambda: {"key_id": self._keys.create_active(session).key_id},
            )

        result = await self._db.run(act)
        self._keys.reload()
        return next(k for k in self._keys.all() if k.key_id == result["key_id"])

    async def retire_key(self, key_id: str) -> None:
        await self._db.run(lambda s: KeyRing.retire(s, key_id))
        self._keys.reload()

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
            )

        return await self._db.run(read, write=False)
