"""One interceptor for every call: who is calling (from the mTLS certificate), may they call
this method (the role table), and error mapping for whatever the servicer raises.

grpc.aio interceptors do not see the peer certificate, so this one wraps the method handler
and does its work inside the call, where the servicer context is available.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from numbind.registry.api.errors import abort_with
from numbind.registry.api.types import Ctx
from numbind.registry.domain.types import Principal, Role
from numbind.registry.services.directory import Directory

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("numbind_principal")

SPIFFE_PREFIX = "spiffe://numbind/"
if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler

# Which roles may call each service (or method). DESIGN.md, "Principals and trust".
ROLE_TABLE: dict[str, frozenset[str]] = {
    "/numbind.v1.Tokens/GetKeys": frozenset(Role.ALL),
    "/numbind.v1.Tokens/": frozenset({Role.PLATFORM, Role.CARRIER}),
    "/numbind.v1.Platforms/": frozenset({Role.PLATFORM}),
    # Anyone who must call a number may ask; carriers answer callers too (their own lookup).
    "/numbind.v1.Platforms/CheckReassigned": frozenset({Role.PLATFORM, Role.CARRIER}),
    "/numbind.v1.Carriers/": frozenset({Role.CARRIER}),
    "/numbind.v1.Holders/": frozenset({Role.CARRIER}),
    "/numbind.v1.Admin/": frozenset({Role.ADMIN}),
}
# Infrastructure services answer anyone who passed the TLS handshake.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _principal.get()


def allowed_roles(method: str) -> frozenset[str] | None:
    if method in ROLE_TABLE:
        return ROLE_TABLE[method]
    service = method[: method.rfind("/") + 1]
    return ROLE_TABLE.get(service)


def identity_from_context(context: Ctx) -> tuple[str, str] | None:
    """(role, name) from the client certificate's single spiffe://numbind/ URI SAN."""
    pems = list(context.auth_context().get("x509_pem_cert", ()))
    if not pems:
        return None
    from numbind.registry.pki import principal_from_cert_pem

    try:
        pid = principal_from_cert_pem(pems[0])
    except ValueError:
        return None
    return pid.role, pid.id


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        wrapped: Handler = _wrap(handler, method, self._authorise)
        return wrapped

    async def _authorise(self, method: str, context: Ctx) -> Principal:
        ident = identity_from_context(context)
        if ident is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "client certificate carries no spiffe://numbind/<role>/<id> identity",
            )
        assert ident is not None  # abort() raised otherwise
        role, name = ident
        principal = await self._directory.lookup(role, name)
        if principal is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"principal {SPIFFE_PREFIX}{role}/{name} is unknown or suspended",
            )
        roles = allowed_roles(method)
        if roles is None or role not in roles:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {role!r} may not call {method}",
            )
        assert principal is not None
        return principal


Authorise = Callable[[str, Ctx], Awaitable[Principal]]


def _wrap(handler: Handler, method: str, authorise: Authorise) -> Any:
    if handler.unary_unary:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Ctx) -> Any:
            _principal.set(await authorise(method, context))
            try:
                return await inner_uu(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with(context, exc, method)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
            _principal.set(await authorise(method, context))
            try:
                async for item in inner_us(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with(context, exc, method)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    raise TypeError(f"{method}: streaming requests are not part of numbind.v1")
