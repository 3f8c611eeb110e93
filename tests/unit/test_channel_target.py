"""Several registry addresses in a bundle: one balanced channel target, or a clear refusal."""

from __future__ import annotations

import json

import pytest
from numbind.protocol.bundle import check_registry_address, registry_addresses
from numbind.sdk.channel import channel_target


def test_one_address_is_used_as_it_is() -> None:
    assert channel_target("registry.example:7443") == ("registry.example:7443", [])


def test_several_ipv4_addresses_become_one_round_robin_target() -> None:
    target, options = channel_target("10.0.0.1:7443, 10.0.0.2:7443,10.0.0.3:7444")
    assert target == "ipv4:10.0.0.1:7443,10.0.0.2:7443,10.0.0.3:7444"
    config = json.loads(dict(options)["grpc.service_config"])
    assert config == {"loadBalancingConfig": [{"round_robin": {}}]}
    # The server certificate is checked against the first address's host.
    assert dict(options)["grpc.ssl_target_name_override"] == "10.0.0.1"


def test_several_ipv6_addresses() -> None:
    target, _ = channel_target(["[::1]:7443", "[::1]:7444"])
    assert target == "ipv6:[::1]:7443,[::1]:7444"


@pytest.mark.parametrize(
    ("addresses", "needle"),
    [
        ("a.example:1,b.example:1", "must be IP addresses"),
        ("10.0.0.1:1,[::1]:1", "mix IPv4 and IPv6"),
    ],
)
def test_what_cannot_be_balanced_is_refused(addresses: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        channel_target(addresses)


def test_bundle_addresses_are_each_checked() -> None:
    assert registry_addresses("10.0.0.1:1,10.0.0.2:1") == ["10.0.0.1:1", "10.0.0.2:1"]
    check_registry_address("10.0.0.1:1,10.0.0.2:1")
    with pytest.raises(ValueError, match="not host:port"):
        check_registry_address("10.0.0.1:1,10.0.0.2")
    with pytest.raises(ValueError, match="twice"):
        check_registry_address("10.0.0.1:1,10.0.0.1:1")
