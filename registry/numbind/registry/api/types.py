"""Typing shorthands for the API layer."""

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

if TYPE_CHECKING:
    Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:
    Ctx = grpc.aio.ServicerContext
