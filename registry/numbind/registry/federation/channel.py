"""mTLS channels from this registry to a peer: the hub, a member, the token service.

Each channel presents this registry's peer certificate (`spiffe://numbind/registry/<id>`)
and trusts only the CA the manifest names for the member it dials, so a server with a
certificate from any other CA (another member's included) fails the handshake.
`PeerChannels` keeps one channel per member for the life of the server; fan-out,
replication and forwarded tokenisation all share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc
import grpc.aio
from numbind.protocol.limits import MAX_MESSAGE_BYTES
from numbind.protocol.manifest import FederationSetupError, Member
from numbind.registry.federation.files import FederationDir

__all__ = ["PeerChannels", "peer_channel", "peer_credentials"]

_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # A peer that is down is retried quickly once it is back, not after grpc's long backoff.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def peer_credentials(files: FederationDir, member: Member) -> grpc.ChannelCredentials:
    """This registry's peer certificate, trusting `member`'s CA alone."""
    try:
        cert_pem = files.peer_cert_path.read_bytes()
        key_pem = files.peer_key_path.read_bytes()
    except OSError as exc:
        raise FederationSetupError(
            f"this registry's peer certificate is missing ({exc.filename}); accept the grant again"
        ) from None
    return grpc.ssl_channel_credentials(
        root_certificates=member.ca_pem.encode("ascii"),
        private_key=key_pem,
        certificate_chain=cert_pem,
    )


def peer_channel(files: FederationDir, member: Member) -> grpc.aio.Channel:
    """A new grpc.aio channel to `member` at its manifest address (the caller closes it)."""
    return grpc.aio.secure_channel(
        member.address, peer_credentials(files, member), options=_OPTIONS
    )


class PeerChannels:
    """One channel per member, opened on first use, closed together at shutdown.

    Contract: `get` never dials a member outside the manifest it was built from or last
    `update`d with; a channel
    to a member that is down is still returned (calls on it fail UNAVAILABLE and grpc
    reconnects once the member is back)."""

    def __init__(self, files: FederationDir, members: Iterable[Member]) -> None:
        self._files = files
        self._members = {m.id: m for m in members}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # The manifest entry each open channel was dialled for.
        self._dialled: dict[str, Member] = {}

    def update(self, members: Iterable[Member]) -> None:
        """Follow a newer manifest (call inside the event loop): a new member can be
        dialled; a member that moved, changed CA or left loses its channel (closed in
        the background; the next `get` dials the new address)."""
        self._members = {m.id: m for m in members}
        for member_id in list(self._channels):
            if (
                member_id in self._members
                and self._dialled.get(member_id) == (self._members[member_id])
            ):
                continue
            channel = self._channels.pop(member_id)
            self._dialled.pop(member_id, None)
            task = asyncio.get_running_loop().create_task(channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def member(self, member_id: str) -> Member:
        try:
            return self._members[member_id]
        except KeyError:
            raise FederationSetupError(f"no member {member_id!r} in the manifest") from None

    def get(self, member_id: str) -> grpc.aio.Channel:
        channel = self._channels.get(member_id)
        if channel is None:
            member = self.member(member_id)
            channel = peer_channel(self._files, member)
            self._channels[member_id] = channel
            self._dialled[member_id] = member
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        self._dialled = {}
        for channel in channels:
            await channel.close()
