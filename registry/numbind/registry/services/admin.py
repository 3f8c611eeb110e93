"""Admin operations: principals, token keys, statistics. No grpc here.

Principals are registered and suspended through this service whichever way the operator
asks: the Admin RPCs (`register`, `set_suspended`), or the data dir directly with no server
running (`register_offline`, `set_suspended_offline`, used by `numbind admin add-*|suspend|
resume` and numbind.registry.testing). Both paths share one check (`NewPrincipal`) and one
record.

Rotation is the one place both halves of the token design meet: the token service (KeyRing)
makes the new key and computes Delta = k_new / k_old; the store side receives only Delta
(storage.keymap.begin_rekey), in the same transaction, and re-keys in the background.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from numbind.registry.domain import logged, validate
from numbind.registry.domain.keymap import RekeyStatus
from numbind.registry.domain.principals import NewPrincipal, attestation_key, suspendable_role
from numbind.registry.domain.types import Principal, Role, now_us
from numbind.registry.errors import InvalidArgument, NotFound
from numbind.registry.keys import KeyRing, TokenKey
from numbind.registry.pki import CertificateAuthority, PrincipalId, certificate_sha256
from numbind.registry.services.directory import Directory
from numbind.registry.services.rekey import RekeyRunner
from numbind.registry.services.standing import StandingService
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import idempotency, keymap, log, principals, stats
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.models import PrincipalRow
from numbind.registry.storage.stats import Stats, Usage

__all__ = ["AdminService", "NewPrincipal", "Stats", "Usage"]


class AdminService:
    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        directory: Directory,
        ca: CertificateAuthority | None,
        tokens: TokenMapper | None = None,
        rekeyer: RekeyRunner | None = None,
        standing: StandingService | None = None,
    ) -> None:
        self._db = db
        self._keys = keys
        self._directory = directory
        self._ca = ca
        # The operator's data-dir commands (registering, suspending) run without a server,
        # hence without the server's key-map cache and re-key runner.
        self._tokens = tokens if tokens is not None else TokenMapper(db)
        self._rekeyer = rekeyer
        # Without a server (the operator's commands), a running registry learns of a change
        # of standing from the principals table within StandingService.check_seconds.
        self._standing = standing
        # Called after a rotation or retirement commits, before the call answers (a
        # federation's hub signs a manifest listing its keys there).
        self.on_keys_changed: list[Callable[[], None]] = []

    # -- principals ----------------------------------------------------------------------
    async def register(
        self,
        caller: Principal,
        request_id: str,
        body_hash: bytes,
        new: NewPrincipal,
        csr_pem: bytes,
    ) -> dict[str, Any]:
        """Register `new` and sign its CSR; idempotent under (caller, request_id)."""
        validate.request_id(request_id)
        cert = self._sign(new.role, new.name, csr_pem)

        def act(session: Session) -> dict[str, Any]:
            def first() -> dict[str, Any]:
                self._record(session, new, certificate_sha256(cert))
                return {"uri": f"spiffe://numbind/{new.role}/{new.name}", "cert": cert.decode()}

            return idempotency.once(
                session, caller.pk, f"Register{new.role}", request_id, body_hash, first
            )

        return await self._db.run(act)

    def register_offline(self, new: NewPrincipal, csr_pem: bytes) -> bytes:
        """`register` for the operator on the data dir: no server, no caller, no request id
        (a second run is AlreadyExists). Returns the signed certificate."""
        cert = self._sign(new.role, new.name, csr_pem)
        self._db.transact(lambda s: self._record(s, new, certificate_sha256(cert)))
        return cert

    def reissue_offline(
        self, role: str, name: str, csr_pem: bytes, attestation_pub: bytes | None
    ) -> tuple[Principal, bytes]:
        """A new certificate for an existing platform or carrier (and, for a carrier, a new
        attestation key): pinned at once, so the old certificate (and key) stop working,
        in this process now and in a running registry within its directory cache's
        lifetime. Returns the principal and the certificate."""
        suspendable_role(role)
        key = attestation_key(attestation_pub) if attestation_pub is not None else None
        if (role == Role.CARRIER) != (key is not None):
            want = "a new key for a carrier" if role == Role.CARRIER else "none"
            raise InvalidArgument(f"attestation_public_key: want {want}")
        if self._db.transact(lambda s: principals.find(s, role, name), write=False) is None:
            raise NotFound(f"principal_id: no {role} named {name!r}")
        cert = self._sign(role, name, csr_pem)
        principal = self._db.transact(
            lambda s: principals.set_certificate(s, role, name, certificate_sha256(cert), key)
        )
        self._changed(principal.pk)
        return principal, cert

    def roles_of(self, name: str) -> list[str]:
        """The roles (platform, carrier) under which ``name`` is registered."""

        def found(session: Session) -> list[str]:
            roles = (Role.PLATFORM, Role.CARRIER)
            return [r for r in roles if principals.find(session, r, name) is not None]

        return self._db.transact(found, write=False)

    def _sign(self, role: str, name: str, csr_pem: bytes) -> bytes:
        if self._ca is None:
            raise InvalidArgument("this registry has no CA key loaded; register locally")
        try:
            return self._ca.sign_csr(csr_pem, PrincipalId(role, name))  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidArgument(f"csr_pem: {exc}") from None

    @staticmethod
    def _record(session: Session, new: NewPrincipal, cert_sha256: bytes) -> Principal:
        return principals.register(
            session,
            new.role,
            new.name,
            display_name=new.display_name,
            category=new.category,
            attestation_key=new.attestation_key,
            cert_sha256=cert_sha256,
        )

    def _changed(self, pk: int) -> None:
        """After a change of standing commits: end what was authorised under the old one."""
        if self._standing is not None:
            self._standing.changed([pk])
        else:
            self._directory.invalidate()

    async def set_suspended(self, role: str, name: str, suspended: bool) -> None:
        suspendable_role(role)
        pk = await self._db.run(lambda s: principals.set_suspended(s, role, name, suspended))
        self._changed(pk)

    def set_suspended_offline(self, role: str, name: str, suspended: bool) -> None:
        """`set_suspended` for the operator on the data dir. A running registry sees it
        within a second: its open streams re-read the standing version, new calls miss
        the directory cache."""
        suspendable_role(role)
        pk = self._db.transact(lambda s: principals.set_suspended(s, role, name, suspended))
        self._changed(pk)

    async def set_attestation_key(self, name: str, key: bytes) -> None:
        attestation_key(key)
        pk = await self._db.run(lambda s: principals.set_attestation_key(s, name, key))
        self._changed(pk)

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
            # Public keys only: what a client needs to check that tokens moved to this key.
            log.append(
                session,
                [
                    logged.key_rotation(
                        key_id=rotation.key.key_id,
                        public_key=rotation.key.public_key,
                        previous_key_id=rotation.previous_key_id,
                    )
                ],
            )
            return {"key_id": rotation.key.key_id}

        def act(session: Session) -> dict[str, Any]:
            return idempotency.once(
                session, caller.pk, "RotateKey", request_id, body, lambda: rotate(session)
            )

        result = await self._db.run(act)
        self._keys.reload()
        self._tokens.invalidate()
        # Without a runner in this process, a registry's runner takes the job up at its
        # next poll (RekeyRunner polls every few seconds).
        if self._rekeyer is not None:
            self._rekeyer.wake()
        for hook in self.on_keys_changed:
            hook()
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
        for hook in self.on_keys_changed:
            hook()

    def export_key(self, key_id: str) -> bytes:
        return self._keys.export(key_id)

    async def stats(self) -> Stats:
        return await self._db.run(lambda s: stats.read(s, now_us()), write=False)
