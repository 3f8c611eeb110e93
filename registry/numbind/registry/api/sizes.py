"""Per-RPC request sizes: a request bigger than its RPC's largest legal one is refused
before it is parsed.

gRPC's server takes one receive limit for every method; it is set to the largest legal
request of any RPC (numbind.protocol.limits.MAX_RECEIVE_BYTES), so anything bigger is
refused by gRPC itself before it is buffered. Below that, this interceptor swaps each
method's deserializer for one that looks at the length first: an oversize request is
never parsed (parsing megabytes of protobuf holds the GIL, and so stalls every other
principal's calls), and the call fails with INVALID_ARGUMENT naming the limit. Not
RESOURCE_EXHAUSTED: the same request would never fit, and clients retry that status.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from numbind.protocol.limits import request_limit
from numbind.registry.api.interceptors import OPEN_PREFIXES, Handler
from numbind.registry.api.types import Ctx
from numbind.registry.errors import InvalidArgument

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


class Oversize:
    """Stands in for a request that was not parsed."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


def refusal(method: str, size: int) -> InvalidArgument:
    rpc = method.rsplit("/", 1)[-1]
    return InvalidArgument(
        f"request: got {size:,} bytes, want at most {request_limit(method):,} for {rpc} "
        "(the largest legal request; split the batch)"
    )


class RequestSizeInterceptor(grpc.aio.ServerInterceptor):
    """Must sit inside the error interceptor, which maps the refusal to its status."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        sized: Handler = sized_handler(handler, method, request_limit(method))
        return sized


def sized_handler(handler: Handler, method: str, limit: int) -> Any:
    parse: Any = handler.request_deserializer

    def deserialize(raw: bytes) -> Any:
        if len(raw) > limit:
            return Oversize(len(raw))
        return parse(raw) if parse is not None else raw

    if handler.unary_unary:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Ctx) -> Any:
            if isinstance(request, Oversize):
                raise refusal(method, request.size)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        inner_us: Any = handler.unary_stream
        if inspect.isasyncgenfunction(inner_us):

            async def unary_stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
                if isinstance(request, Oversize):
                    raise refusal(method, request.size)
                async for item in inner_us(request, context):
                    yield item

            behaviour: Any = unary_stream
        else:

            async def unary_stream_writer(request: Any, context: Ctx) -> None:
                if isinstance(request, Oversize):
                    raise refusal(method, request.size)
                await inner_us(request, context)

            behaviour = unary_stream_writer
        return grpc.unary_stream_rpc_method_handler(
            behaviour,
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    raise TypeError(f"{method}: streaming requests are not part of numbind.v1")
