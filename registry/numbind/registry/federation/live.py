"""A running registry follows federation changes without a restart.

- `key_signer`: at the hub, a token-key rotation signs the next manifest listing the new
  key at once, so members (which accept the token service's answers only under keys the
  manifest lists) never refuse their platforms between a rotation and an operator's
  `federation refresh`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from numbind.protocol.manifest import FederationError
from numbind.registry.federation.hub import follow_token_keys
from numbind.registry.federation.serving import Serving
from numbind.registry.federation.token_keys import from_ring
from numbind.registry.keys import KeyRing

__all__ = ["key_signer"]

log = logging.getLogger(__name__)


def key_signer(
    serving: Serving | None, keys: KeyRing, on_signed: Callable[[], None]
) -> Callable[[], None] | None:
    """A hook for AdminService.on_keys_changed at a hub that runs the token service and
    holds the federation key; None anywhere else. `on_signed` runs after a new version is
    written (wake the members' streams, which carry the manifest)."""
    if serving is None or not (serving.is_authority and serving.is_token_service):
        return None
    files = serving.files
    if files.load_key() is None:
        return None

    def sign() -> None:
        try:
            result = follow_token_keys(files, from_ring(keys, serving.hub.address))
        except FederationError as exc:
            log.warning("token keys changed, but the manifest was not re-signed: %s", exc.message)
            return
        if result.changed:
            manifest = result.signed.manifest
            log.info(
                "signed manifest v%d: token service keys %s, active %s",
                manifest.version,
                ", ".join(k.key_id for k in manifest.token_service.keys),
                manifest.token_service.active_key_id,
            )
            on_signed()

    return sign
