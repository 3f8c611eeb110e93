"""The token service's public keys, as the hub publishes them in the manifest.

The one place federation reads the key ring (numbind.registry.keys): public halves only,
never a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from numbind.protocol.manifest import FederationSetupError, TokenPublicKey, TokenService
from numbind.registry.config import Settings

if TYPE_CHECKING:
    from numbind.registry.keys import KeyRing

__all__ = ["from_ring", "token_service"]


def token_service(settings: Settings, address: str) -> TokenService:
    """The token service's public keys, from this registry's key ring."""
    from numbind.registry.app import open_database
    from numbind.registry.errors import NumbindError
    from numbind.registry.keys import KeyRing
    from numbind.registry.storage import migrate

    db = open_database(settings)
    try:
        migrate.upgrade(db.write_engine)
        ring = KeyRing(db, settings.keys_dir)
        ring.reload()
        return from_ring(ring, address)
    except NumbindError as exc:
        raise FederationSetupError(f"token keys: {exc.message}") from None
    finally:
        db.close()


def from_ring(ring: KeyRing, address: str) -> TokenService:
    """The token service's public keys from a loaded key ring (a running hub's)."""
    active = ring.active()
    keys = sorted(
        (TokenPublicKey(k.key_id, k.public_key) for k in ring.live()), key=lambda k: k.key_id
    )
    return TokenService(address=address, active_key_id=active.key_id, keys=tuple(keys))
