"""mTLS channels to the registry from a credential bundle.

A bundle (or ``target``) may name several registry processes, ``a:p,b:p,c:p``: the channel
then resolves to all of them and spreads calls with gRPC's ``round_robin`` policy, skipping
a process that is down or draining (a call that was on it fails UNAVAILABLE and the SDK
retries it on another). One address behind a load balancer (HAProxy, Envoy) works the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, overload

import grpc
import grpc.aio
from numbind.protocol.addresses import parse_registry
from numbind.protocol.bundle import Bundle, registry_addresses
from numbind.protocol.limits import MAX_MESSAGE_BYTES

__all__ = [
    "DEFAULT_CHANNEL_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "channel_target",
    "checked_host",
    "secure_channel",
]

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


ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def checked_host(addresses: str | Sequence[str]) -> str:
    """The host the server certificate is checked against: the first address's (with
    several, channel_target overrides the name TLS checks with it)."""
    items = registry_addresses(addresses) if isinstance(addresses, str) else list(addresses)
    return items[0].rpartition(":")[0].strip("[]") if items else ""


def channel_target(
    addresses: str | Sequence[str],
) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target and extra channel options for one address or several.

    Several addresses must be IP literals (``ipv4:`` / ``ipv6:`` targets list them; a host
    name with several addresses is one DNS name, given as one address). The TLS host
    checked is the first address's host: every process presents a certificate for it (the
    registry's server certificate names the hosts it serves).
    """
    items = registry_addresses(addresses) if isinstance(addresses, str) else list(addresses)
    if not items:
        raise ValueError("registry address: got none, want host:port[,host:port...]")
    # Bundle.load refuses a bad address already; this catches a target given directly.
    # parse_registry also holds several addresses to IP literals of one family.
    parsed = parse_registry(",".join(items))
    if len(items) == 1:
        return items[0], []
    scheme = "ipv4" if parsed[0].family == 4 else "ipv6"
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", ROUND_ROBIN),
        ("grpc.ssl_target_name_override", checked_host(items)),
    ]
    return f"{scheme}:{','.join(items)}", options


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
    """Open an mTLS channel to ``target`` (default ``bundle.registry``; aio by default);
    either may list several addresses (see the module docstring).

    The server certificate is checked against the bundle's CA and the target host, including
    IP-address SANs when the registry is given as an IP.
    """
    creds = bundle.channel_credentials()
    address, balancing = channel_target(target or bundle.registry)
    # The caller's options win over the balancing ones (a custom service config, say).
    merged = _merge_options([*balancing, *(options or ())])
    if aio:
        return grpc.aio.secure_channel(address, creds, options=merged)
    return grpc.secure_channel(address, creds, options=merged)
