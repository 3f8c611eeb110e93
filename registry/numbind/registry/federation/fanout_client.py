"""The hub's clients of its members' MemberHolders service, over peer mTLS.

`ManifestMembers` is the `MemberDirectory` a federated hub fans out to: every member with
the binding-registry role except the hub itself, each reached through the channel
`channel_for` gives (federation.channel.PeerChannels: the hub's registry certificate,
that member's CA as the only root; shared with replication, closed by its owner).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from numbind.protocol.manifest import Member
from numbind.registry.api.holder_wire import group_from_wire, number_to_wire, progress_from_wire
from numbind.registry.federation.files import Installed
from numbind.registry.services.fanout import MemberClient, MemberUnavailable
from numbind.registry.services.fanout_model import AdmittedNumber, MemberRevocation
from numbind.registry.services.holder_views import PlatformGroup, PlatformProgress, RegistryName
from numbind.v1 import fanout_pb2, fanout_pb2_grpc

__all__ = ["ChannelFactory", "GrpcMemberClient", "ManifestMembers"]

ChannelFactory = Callable[[Member], grpc.aio.Channel]


def _reason(exc: grpc.aio.AioRpcError, deadline_seconds: float) -> str:
    code = exc.code()
    details = (exc.details() or "").splitlines()[0][:160] if exc.details() else ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {deadline_seconds:g} s"
    if code == grpc.StatusCode.UNAVAILABLE:
        # grpc's own text names addresses and internal states; the cause is what matters.
        for cause in ("Connection refused", "Connection reset", "handshake", "Socket closed"):
            if cause.lower() in details.lower():
                return f"unreachable ({cause.lower()})"
        return "unreachable"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"refused the hub: {details}"
    return f"{code.name}: {details}"


class GrpcMemberClient:
    """One member over its channel; grpc failures become MemberUnavailable."""

    def __init__(self, member: Member, channel: grpc.aio.Channel) -> None:
        self.member = member
        self.channel = channel
        self._stub = fanout_pb2_grpc.MemberHoldersStub(channel)
        self._registry = RegistryName(member.id, member.name)

    @property
    def registry(self) -> RegistryName:
        return self._registry

    async def _call(self, method: Any, request: Any, deadline_seconds: float) -> Any:
        try:
            return await method(request, timeout=deadline_seconds)
        except grpc.aio.AioRpcError as exc:
            raise MemberUnavailable(_reason(exc, deadline_seconds)) from None

    async def query(
        self, numbers: Sequence[AdmittedNumber], deadline_seconds: float
    ) -> list[list[PlatformGroup]]:
        reply: fanout_pb2.MemberQueryResponse = await self._call(
            self._stub.MemberQuery,
            fanout_pb2.MemberQueryRequest(numbers=[number_to_wire(n) for n in numbers]),
            deadline_seconds,
        )
        return [[group_from_wire(p, self._registry) for p in n.platforms] for n in reply.numbers]

    async def revoke(self, request: MemberRevocation, deadline_seconds: float) -> int:
        reply: fanout_pb2.MemberRevokeResponse = await self._call(
            self._stub.MemberRevoke,
            fanout_pb2.MemberRevokeRequest(
                revocation_id=request.revocation_id,
                number=number_to_wire(request.number),
                scope=request.scope,  # type: ignore[arg-type]
                platform_ids=request.platform_ids,
            ),
            deadline_seconds,
        )
        return int(reply.orders)

    async def platforms(self, platform_ids: Sequence[str], deadline_seconds: float) -> set[str]:
        reply: fanout_pb2.MemberPlatformsResponse = await self._call(
            self._stub.MemberPlatforms,
            fanout_pb2.MemberPlatformsRequest(platform_ids=platform_ids),
            deadline_seconds,
        )
        return set(reply.held)

    async def progress(
        self, revocation_id: str, deadline_seconds: float
    ) -> list[PlatformProgress] | None:
        reply: fanout_pb2.MemberRevocationResponse = await self._call(
            self._stub.MemberRevocation,
            fanout_pb2.MemberRevocationRequest(revocation_id=revocation_id),
            deadline_seconds,
        )
        if not reply.known:
            return None
        return [progress_from_wire(p, self._registry) for p in reply.platforms]


class ManifestMembers:
    """The binding registries of the installed manifest other than this one. Channels
    are asked for on first use (inside the event loop that will use them)."""

    def __init__(self, installed: Installed, channel_for: ChannelFactory) -> None:
        self._channel_for = channel_for
        self._clients: dict[str, GrpcMemberClient] = {}
        self._wanted: list[Member] = []
        self.refresh(installed)

    def refresh(self, installed: Installed) -> None:
        """Follow a newer manifest: new members get a channel, moved ones a new one."""
        self._wanted = [
            m
            for m in installed.manifest.members
            if "binding-registry" in m.roles and m.id != installed.member_id
        ]
        for member_id, client in list(self._clients.items()):
            if client.member not in self._wanted:
                del self._clients[member_id]

    def _client(self, member: Member) -> GrpcMemberClient:
        client = self._clients.get(member.id)
        if client is None:
            client = self._clients[member.id] = GrpcMemberClient(member, self._channel_for(member))
        return client

    @property
    def member_ids(self) -> list[str]:
        return [m.id for m in self._wanted]

    def members(self) -> Sequence[MemberClient]:
        return [self._client(m) for m in self._wanted]

    def member(self, member_id: str) -> MemberClient | None:
        found = next((m for m in self._wanted if m.id == member_id), None)
        return None if found is None else self._client(found)
