"""Who is calling (from the mTLS certificate) and may they call this method (the role table).

Refusals are raised as the registry's own `Unauthenticated` / `PermissionDenied`; the error
interceptor, which runs outside this one, turns them (and anything unexpected, such as a
store that fails during the lookup) into statuses.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from cryptography import x509
from numbind.protocol.manifest import PeerRefused
from numbind.registry.api.interceptors import GuardInterceptor
from numbind.registry.api.types import Ctx
from numbind.registry.domain.types import Principal, Role
from numbind.registry.errors import FailedPrecondition, PermissionDenied, Unauthenticated
from numbind.registry.federation.callers import CallerTrust
from numbind.registry.federation.serving import LiveCallers
from numbind.registry.services.directory import Directory

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("numbind_principal")

SPIFFE_PREFIX = "spiffe://numbind/"

# Which roles may call each service (or method). DESIGN.md, "Principals and trust".
ROLE_TABLE: dict[str, frozenset[str]] = {
    "/numbind.v1.Tokens/GetKeys": frozenset({*Role.ALL, Role.REGISTRY}),
    # A member forwards its platforms' tokenisation to the federation's token service.
    "/numbind.v1.Tokens/": frozenset({Role.PLATFORM, Role.CARRIER, Role.REGISTRY}),
    "/numbind.v1.Platforms/": frozenset({Role.PLATFORM}),
    # Anyone who must call a number may ask; carriers answer callers too (their own lookup).
    "/numbind.v1.Platforms/CheckReassigned": frozenset({Role.PLATFORM, Role.CARRIER}),
    "/numbind.v1.Carriers/": frozenset({Role.CARRIER}),
    "/numbind.v1.Holders/": frozenset({Role.CARRIER}),
    "/numbind.v1.Admin/": frozenset({Role.ADMIN}),
    # Peer registries: members follow the hub's lifecycle log.
    "/numbind.v1.Federation/": frozenset({Role.REGISTRY}),
    # Anyone may check the verifiable log, members (as witnesses) too; openings are
    # filtered by holder in the service.
    "/numbind.v1.Log/": frozenset({*Role.ALL, Role.REGISTRY}),
}


_PLATFORMS = "/numbind.v1.Platforms/"
_CHECK_REASSIGNED = "/numbind.v1.Platforms/CheckReassigned"


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _principal.get()


def allowed_roles(method: str) -> frozenset[str] | None:
    if method in ROLE_TABLE:
        return ROLE_TABLE[method]
    service = method[: method.rfind("/") + 1]
    return ROLE_TABLE.get(service)


def identity_from_context(context: Ctx) -> tuple[str, str, bytes, bytes] | None:
    """(role, name, certificate SHA-256, certificate PEM) from the client certificate's
    single spiffe://numbind/ URI SAN."""
    pems = list(context.auth_context().get("x509_pem_cert", ()))
    if not pems:
        return None
    pem = bytes(pems[0])
    from numbind.registry.pki import certificate_identity

    try:
        pid, fingerprint = certificate_identity(pem)
    except ValueError:
        return None
    return pid.role, pid.id, fingerprint, pem


class IssuerCheck:
    """In a federation, every member's CA is a TLS root: a certificate must also verify
    under the one CA that may vouch for its identity (`CallerTrust`, under the manifest
    installed now). Results are kept until the certificate expires or the manifest
    changes: every call presents one of a few certificates, and a chain check per call
    would cost more than the call."""

    _MAX = 4096

    def __init__(self, callers: LiveCallers) -> None:
        self._callers = callers
        self._trust: CallerTrust | None = None
        self._verified: dict[bytes, datetime] = {}

    def check(self, pem: bytes) -> None:
        trust = self._callers.get()
        if trust is not self._trust:
            self._trust = trust
            self._verified.clear()
        now = datetime.now(UTC)
        until = self._verified.get(pem)
        if until is not None and now < until:
            return
        try:
            trust.identify(pem, now)
        except PeerRefused as exc:
            raise Unauthenticated(exc.message) from None
        if len(self._verified) >= self._MAX:
            self._verified.clear()
        self._verified[pem] = x509.load_pem_x509_certificate(pem).not_valid_after_utc


class AuthInterceptor(GuardInterceptor):
    """Authenticates and authorises every numbind call before its servicer runs."""

    def __init__(
        self,
        directory: Directory,
        callers: LiveCallers | None = None,
        *,
        no_bindings: str | None = None,
    ) -> None:
        super().__init__(self._authenticated)
        self._directory = directory
        self._issuers = None if callers is None else IssuerCheck(callers)
        # Set on a registry the manifest gives no binding-registry role (the hub, by
        # default): why its platform calls other than CheckReassigned are refused.
        self._no_bindings = no_bindings

    @asynccontextmanager
    async def _authenticated(self, method: str, context: Ctx) -> AsyncIterator[None]:
        _principal.set(await self.authorise(method, context))
        yield

    async def authorise(self, method: str, context: Ctx) -> Principal:
        """The caller, if it may call `method`; else raise Unauthenticated/PermissionDenied."""
        ident = identity_from_context(context)
        if ident is None:
            raise Unauthenticated(
                "client certificate carries no spiffe://numbind/<role>/<id> identity"
            )
        role, name, fingerprint, pem = ident
        if self._issuers is not None:
            self._issuers.check(pem)
        principal = await self._directory.lookup(role, name)
        if principal is None:
            raise Unauthenticated(f"principal {SPIFFE_PREFIX}{role}/{name} is unknown or suspended")
        if principal.cert_sha256 is not None and principal.cert_sha256 != fingerprint:
            # The CA signed it, but a reissued bundle has replaced it.
            raise Unauthenticated(
                f"principal {SPIFFE_PREFIX}{role}/{name}: this certificate was replaced by a "
                "reissued bundle; use the new bundle"
            )
        roles = allowed_roles(method)
        if roles is None or role not in roles:
            raise PermissionDenied(f"role {role!r} may not call {method}")
        if (
            self._no_bindings is not None
            and method.startswith(_PLATFORMS)
            and method != _CHECK_REASSIGNED
        ):
            raise FailedPrecondition(self._no_bindings)
        return principal
