"""The verifiable log's trust from the federation manifest, on the registry's side.

`LiveManifest`: the log service checks members' cosignatures against the witness keys the
installed manifest names, and hands the manifest to clients with checkpoints; it follows
later versions (a member added, its witness key named) without a restart.
`give_bundle_trust`: bundles issued in a federation carry its key and manifest, so their
SDK pins the hub's log key and requires its witnesses (numbind.sdk.log_trust).
"""

from __future__ import annotations

from pathlib import Path

from numbind.protocol.bundle import BUNDLE_JSON, write_federation_trust
from numbind.protocol.manifest import SignedManifest
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.manifest_changes import ManifestChanges

__all__ = ["LiveManifest", "give_bundle_trust"]


class LiveManifest:
    """Contract: returns the newest manifest that verified under the pinned key; the file
    is re-read (and re-verified) only when it changes, and one that no longer verifies
    leaves the last good manifest in place."""

    def __init__(self, files: FederationDir, first: SignedManifest) -> None:
        self._changes = ManifestChanges(files)
        self._held = first

    def __call__(self) -> SignedManifest:
        installed = self._changes.poll()
        if installed is not None and installed.manifest.version >= self._held.version:
            self._held = installed.signed
        return self._held


def give_bundle_trust(data_dir: Path, bundle_dir: Path) -> bool:
    """Write the federation's pinned key and current manifest into a bundle issued from
    `data_dir` (a platform's, carrier's or the admin's), so its SDK pins the federation's
    log key and requires its witnesses. False: no federation installed, nothing written."""
    installed = FederationDir(data_dir).load()
    if installed is None or not (bundle_dir / BUNDLE_JSON).exists():
        return False
    write_federation_trust(bundle_dir, installed.key.vkey(), installed.signed.data)
    return True
