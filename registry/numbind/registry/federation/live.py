"""A running registry follows federation changes without a restart.

- `key_signer`: at the hub, a token-key rotation signs the next manifest listing the new
  key at once, so members (which accept the token service's answers only under keys the
  manifest lists) never refuse their platforms between a rotation and an operator's
  `federation refresh`.
- `ServerRoots`: the TLS server's client roots follow the installed manifest: grpc asks at
  every handshake, so a member `federation add-member` adds is accepted at its first
  handshake, and a removed member's CA stops counting.
- `ManifestWatch`: everything else the manifest drives, applied when its file changes:
  peer registries' principals, the peer channels and the hub's fan-out members, and a
  wake-up for the members' streams, which carry the new version to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
from numbind.protocol.manifest import FederationError
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.hub import follow_token_keys
from numbind.registry.federation.manifest_changes import ManifestChanges
from numbind.registry.federation.peers import PeerTrust
from numbind.registry.federation.serving import Serving
from numbind.registry.federation.token_keys import from_ring
from numbind.registry.keys import KeyRing
from numbind.registry.server_cert import load_server_pair

__all__ = ["ManifestWatch", "ServerRoots", "key_signer"]

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


class ServerRoots:
    """Server credentials whose client roots are this registry's own CA plus the CA of
    every member the manifest installed now names.

    Contract: `fetch` (grpc's certificate configuration fetcher, called from grpc's
    threads before each handshake) returns a new configuration only when the manifest
    file changed and still verifies, else None (grpc keeps the one it has); a manifest
    that no longer verifies keeps the last good roots."""

    def __init__(self, pki_dir: Path, files: FederationDir, installed: Installed) -> None:
        self._changes = ManifestChanges(files)
        self._own_ca = (pki_dir / "ca.pem").read_bytes()
        self._pair = load_server_pair(pki_dir)
        self._lock = threading.Lock()
        self._first = self._config(installed)

    def _config(self, installed: Installed) -> grpc.ServerCertificateConfiguration:
        roots = PeerTrust(installed.manifest).server_root_certificates(self._own_ca)
        return grpc.ssl_server_certificate_configuration([self._pair], root_certificates=roots)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                installed = self._changes.poll()
                if installed is None:
                    return None
                config = self._config(installed)
            except Exception:
                # Raised into grpc's handshake it would fail every connection.
                log.exception("manifest changed; TLS roots kept")
                return None
            log.info("TLS client roots follow manifest v%d", installed.manifest.version)
            return config

    def credentials(self) -> grpc.ServerCredentials:
        # grpc documents None from the fetcher as "keep the current configuration"; its
        # type stubs do not say so.
        return grpc.dynamic_ssl_server_credentials(
            self._first,
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )


class ManifestWatch:
    """Calls each of `on_change` with the newly installed manifest whenever the manifest
    file changes (`federation add-member`, `remove-member`, `refresh` on the hub; a
    version replication installed on a member). A hook that fails is logged and the
    others still run; a manifest that does not verify is skipped."""

    def __init__(self, files: FederationDir, on_change: list[Callable[[Installed], None]]) -> None:
        self._changes = ManifestChanges(files)
        self.on_change = on_change

    def check(self) -> Installed | None:
        """Apply a changed manifest now; returns it (None: unchanged or unusable)."""
        installed = self._changes.poll()
        if installed is None:
            return None
        for hook in self.on_change:
            try:
                hook(installed)
            except Exception:
                log.exception("following manifest v%d", installed.manifest.version)
        log.info("following manifest v%d", installed.manifest.version)
        return installed

    async def run(self, stopping: asyncio.Event, every_seconds: float = 0.5) -> None:
        while not stopping.is_set():
            self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every_seconds)
