"""NewPrincipal: the one check every registration passes (Admin RPCs and offline commands)."""

from __future__ import annotations

import nacl.signing
import pytest
from numbind.registry.domain.principals import NewPrincipal, suspendable_role
from numbind.registry.errors import InvalidArgument

# A real Ed25519 public key: carrier keys must be valid points.
KEY = nacl.signing.SigningKey(bytes(range(32))).verify_key.encode()


def test_a_well_formed_principal_of_each_role() -> None:
    NewPrincipal("platform", "acme", "示例网盘", "cloud-drive")
    NewPrincipal("carrier", "cm", "示例移动", attestation_key=KEY)
    NewPrincipal("admin", "admin", "registry admin")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "root"}, "role: got 'root', want platform, carrier or admin"),
        ({"name": "-acme"}, "platform_id: got '-acme', want [a-z0-9][a-z0-9._-]{0,62}"),
        ({"display_name": ""}, "display_name: got '', want a name shown to holders"),
        ({"display_name": "x" * 65}, "display_name: got 65 characters, want at most 64"),
        ({"category": "x" * 65}, "category: got 65 characters, want one of cloud-drive, "),
        ({"display_name": "a\tb"}, "display_name: got 'a\\tb', want printable text "),
        ({"attestation_key": KEY}, "attestation_public_key: got a key, want none for a platform"),
        (
            {"role": "carrier", "name": "cm"},
            "attestation_public_key: got none, want 32",
        ),
        (
            {"role": "carrier", "name": "cm", "attestation_key": KEY[:31]},
            "attestation_public_key: got 31 bytes, want 32",
        ),
    ],
)
def test_refusals_name_the_field(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "role": "platform",
        "name": "acme",
        "display_name": "示例网盘",
        "category": "cloud-drive",
        **kwargs,
    }
    with pytest.raises(InvalidArgument) as err:
        NewPrincipal(**fields)  # type: ignore[arg-type]
    assert err.value.message.startswith(message)


def test_only_platforms_and_carriers_are_suspendable() -> None:
    assert suspendable_role("carrier") == "carrier"
    with pytest.raises(InvalidArgument, match="role: got 'admin', want platform or carrier"):
        suspendable_role("admin")
