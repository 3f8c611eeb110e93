"""Server interceptors as guards: an async context manager entered around every call.

grpc.aio interceptors see neither the request nor the servicer context, so a guard wraps the
method handler instead and runs inside the call, where the context is available. The first
interceptor given to the server is the outermost: the error guard comes first so it sees
whatever the guards after it (authentication, authorisation) and the servicer raise.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from numbind.registry.api.types import Ctx

if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler

# A guard for one call of `method`: entered before the servicer runs, exited after its last
# response (or with what it raised).
Guard = Callable[[str, Ctx], AbstractAsyncContextManager[None]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]

# Infrastructure services (grpc's own code) answer anyone who passed the TLS handshake and
# keep grpc's own error handling; reflection is bidirectional streaming anyway.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Runs `guard` around every numbind call, unary-unary and unary-stream alike."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        guarded: Handler = guarded_handler(handler, method, self._guard)
        return guarded


def guarded_handler(handler: Handler, method: str, guard: Guard) -> Any:
    """`handler` with each call run inside `guard(method, context)`."""
    if handler.unary_unary:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Ctx) -> Any:
            async with guard(method, context):
                return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        inner_us: Any = handler.unary_stream
        # grpc.aio serves a stream from an async generator, or from a coroutine that calls
        # context.write(); the guarded handler keeps the shape it wraps.
        if inspect.isasyncgenfunction(inner_us):

            async def unary_stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
                async with guard(method, context):
                    async for item in inner_us(request, context):
                        yield item

            behaviour: Any = unary_stream
        else:

            async def unary_stream_writer(request: Any, context: Ctx) -> None:
                async with guard(method, context):
                    await inner_us(request, context)

            behaviour = unary_stream_writer
        return grpc.unary_stream_rpc_method_handler(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    raise TypeError(f"{method}: streaming requests are not part of numbind.v1")
