"""The manifest installed now, for what must follow it while the registry runs.

`numbind serve` loads the manifest once (`Serving`); the log's trust must follow later
versions (a member added, its witness key named) without a restart, as caller trust does
(`serving.LiveCallers`).
"""

from __future__ import annotations

from numbind.protocol.manifest import FederationError, SignedManifest
from numbind.registry.federation.files import FederationDir

__all__ = ["LiveManifest"]


class LiveManifest:
    """Contract: returns the newest manifest that verified under the pinned key; the file
    is re-read (and re-verified) only when it changes, and one that no longer verifies
    leaves the last good manifest in place."""

    def __init__(self, files: FederationDir, first: SignedManifest) -> None:
        self._files = files
        self._held = first
        self._stamp = self._mtime()

    def _mtime(self) -> int:
        try:
            return self._files.manifest_path.stat().st_mtime_ns
        except OSError:
            return -1

    def __call__(self) -> SignedManifest:
        stamp = self._mtime()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                installed = self._files.load()
            except FederationError:
                return self._held
            if installed is not None and installed.manifest.version >= self._held.version:
                self._held = installed.signed
        return self._held
