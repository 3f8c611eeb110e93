"""Platforms servicer: wire <-> BindingService, nothing else.

The feed half (StreamEvents, AckEvents, CheckReassigned) lives in registry.api.feed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from numbind.registry.api.auth import current_principal
from numbind.registry.api.convert import body_hash, ts_from_us
from numbind.registry.api.feed import FeedRpcs
from numbind.registry.api.types import Ctx
from numbind.registry.domain.bindings import BindingKey
from numbind.registry.domain.types import US, Binding, BindingKind, Token
from numbind.registry.services.bindings import BindingService
from numbind.registry.services.feed import FeedService
from numbind.registry.services.lifecycle import LifecycleService
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc


class PlatformsServicer(FeedRpcs, platforms_pb2_grpc.PlatformsServicer):
    """Bindings RPCs here; the feed RPCs (stream, acks, reassigned) come from FeedRpcs."""

    def __init__(
        self, service: BindingService, feed: FeedService, lifecycle: LifecycleService
    ) -> None:
        self._service = service
        self._feed = feed
        self._lifecycle = lifecycle

    async def PublishBindings(
        self, request: platforms_pb2.PublishBindingsRequest, context: Ctx
    ) -> platforms_pb2.PublishBindingsResponse:
        counts = await self._service.publish(
            current_principal(),
            request.request_id,
            body_hash(request),
            bindings_from_wire(request.bindings),
        )
        return platforms_pb2.PublishBindingsResponse(
            inserted=counts.inserted,
            updated=counts.updated,
            unchanged=counts.unchanged,
            revoked=counts.revoked,
            revoked_on_arrival=counts.revoked_on_arrival,
        )

    async def WithdrawBindings(
        self, request: platforms_pb2.WithdrawBindingsRequest, context: Ctx
    ) -> platforms_pb2.WithdrawBindingsResponse:
        counts = await self._service.withdraw(
            current_principal(),
            request.request_id,
            body_hash(request),
            [
                BindingKey(Token(k.token.key_id, k.token.value), k.account_ref)
                for k in request.bindings
            ],
            keep_at_least=request.keep_at_least,
        )
        return platforms_pb2.WithdrawBindingsResponse(
            withdrawn=counts.withdrawn, not_found=counts.not_found
        )

    async def GetDigest(
        self, request: platforms_pb2.GetDigestRequest, context: Ctx
    ) -> platforms_pb2.GetDigestResponse:
        buckets, revoked = await self._service.digest(
            current_principal(), request.bucket_bits, request.key_id
        )
        return platforms_pb2.GetDigestResponse(
            bucket_bits=request.bucket_bits,
            buckets=[
                platforms_pb2.BucketDigest(bucket=b.bucket, count=b.count, digest=b.digest)
                for b in buckets
            ],
            revoked=revoked,
        )

    async def ListBindings(
        self, request: platforms_pb2.ListBindingsRequest, context: Ctx
    ) -> platforms_pb2.ListBindingsResponse:
        page = await self._service.list(current_principal(), *_page_of(request))
        return platforms_pb2.ListBindingsResponse(
            bindings=[binding_to_wire(b) for b in page.bindings],
            next_page_token=page.next_page_token,
        )

    async def ListRevokedBindings(
        self, request: platforms_pb2.ListBindingsRequest, context: Ctx
    ) -> platforms_pb2.ListRevokedBindingsResponse:
        page = await self._service.list_revoked(current_principal(), *_page_of(request))
        return platforms_pb2.ListRevokedBindingsResponse(
            bindings=[
                platforms_pb2.RevokedBinding(binding=binding_to_wire(b), revoked_at=ts_from_us(us))
                for b, us in page.bindings
            ],
            next_page_token=page.next_page_token,
        )


def _page_of(request: platforms_pb2.ListBindingsRequest) -> tuple[int, int, str, int, str]:
    """The page a ListBindings or ListRevokedBindings request asks for, in
    BindingService.list's order: bucket_bits, bucket, key_id, page_size, page_token."""
    return (
        request.bucket_bits,
        request.bucket,
        request.key_id,
        request.page_size,
        request.page_token,
    )


def bindings_from_wire(items: Iterable[common_pb2.Binding]) -> list[Binding]:
    """The hot loop of PublishBindings: each submessage read once (upb builds a wrapper per
    access), the timestamp converted inline."""
    out: list[Binding] = []
    append = out.append
    for b in items:
        t, ts = b.token, b.bound_at
        # kind passes through as the wire number: an out-of-range value must reach the
        # service's validation to be reported with its index, and BindingKind is an
        # IntEnum, so a valid number already behaves as the member.
        kind = cast(BindingKind, b.kind)
        append(
            Binding(
                Token(t.key_id, t.value), b.account_ref, ts.seconds * US + ts.nanos // 1000, kind
            )
        )
    return out


def binding_to_wire(b: Binding) -> common_pb2.Binding:
    return common_pb2.Binding(
        token=common_pb2.Token(key_id=b.token.key_id, value=b.token.value),
        account_ref=b.account_ref,
        bound_at=ts_from_us(b.bound_us),
        kind=cast(common_pb2.BindingKind.ValueType, int(b.kind)),
    )
