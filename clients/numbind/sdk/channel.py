"""mTLS channels to the registry from a credential bundle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, overload

import grpc
import grpc.aio
from numbind.protocol.bundle import Bundle
from numbind.protocol.limits import MAX_MESSAGE_BYTES

__all__ = ["DEFAULT_CHANNEL_OPTIONS", "MAX_MESSAGE_BYTES", "secure_channel"]

# The server must allow these pings (grpc.keepalive_permit_without_calls=1 and
# grpc.http2.min_ping_interval_without_data_ms <= 30000), or it answers with GOAWAY
# "too_many_pings" and the channel reconnects.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


def _merge_options(options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    # Caller options replace defaults of the same name rather than being appended after them,
    # since grpc's handling of duplicate keys is not something to rely on.
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(options or ())
    return list(merged.items())


@overload
def secure_channel(
    bundle: Bundle,
    *,
    aio: Literal[True] = ...,
    options: Sequence[tuple[str, Any]] | None = ...,
    target: str | None = ...,
) -> grpc.aio.Channel: ...
@overload
def secure_channel(
    bundle: Bundle,
    *,
    aio: Literal[False],
    options: Sequence[tuple[str, Any]] | None = ...,
    target: str | None = ...,
) -> grpc.Channel: ...
def secure_channel(
    bundle: Bundle,
    *,
    aio: bool = True,
    options: Sequence[tuple[str, Any]] | None = None,
    target: str | None = None,
) -> grpc.aio.Channel | grpc.Channel:
    """Open an mTLS channel to ``target`` (default ``bundle.registry``; aio by default).

    The server certificate is checked against the bundle's CA and the target host, including
    IP-address SANs when the registry is given as an IP.
    """
    creds = bundle.channel_credentials()
    merged = _merge_options(options)
    address = target or bundle.registry
    if aio:
        return grpc.aio.secure_channel(address, creds, options=merged)
    return grpc.secure_channel(address, creds, options=merged)
