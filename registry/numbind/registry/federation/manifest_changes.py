"""Following the installed manifest file while the registry runs.

Several parts of a running registry follow the manifest (TLS roots, caller trust, the
log's witness keys, the hub's fan-out members): each asks `ManifestChanges.poll` and keeps
what it has unless a new manifest that verifies was installed since its last poll.
"""

from __future__ import annotations

import logging

from numbind.protocol.manifest import FederationError
from numbind.registry.federation.files import FederationDir, Installed

__all__ = ["ManifestChanges"]

log = logging.getLogger(__name__)


class ManifestChanges:
    """Contract: `poll` returns the installed federation when the manifest file changed
    since the last poll (or since construction) and re-verifies under the pinned key;
    None when it is unchanged, gone, or does not verify (logged), so the caller keeps the
    last good one. The file is read only when its modification time moved."""

    def __init__(self, files: FederationDir) -> None:
        self._files = files
        self._stamp = self._mtime()

    def _mtime(self) -> int:
        try:
            return self._files.manifest_path.stat().st_mtime_ns
        except OSError:
            return -1

    def poll(self) -> Installed | None:
        stamp = self._mtime()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            return self._files.load()
        except FederationError as exc:
            log.warning("manifest changed but does not verify; keeping the last: %s", exc)
            return None
