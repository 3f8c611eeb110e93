"""Whose word a client takes for the registry's log: the federation manifest's.

A bundle issued in a federation holds the federation key to pin (``federation.vkey``) and
the signed manifest (``manifest.note``). The manifest names the hub's log (origin and
Ed25519 key) and each member's witness key; the default policy for the hub's log is then
"signed by that key, cosigned by every member that declared a witness key"
(`Manifest.witness_policy`). The registry returns the manifest it holds with every
checkpoint: a newer one that verifies under the pinned key replaces the bundle's (so a
member added later is required from then on); one that does not verify is refused.

The manifest also names each member's own log (the orders it makes for its platforms, and
their acks) and the hub's witness key, so a platform's default for its registry's log is
"signed by the key the manifest names for that member, cosigned by every OTHER registry
(hub included) that declared a witness key". A log the manifest does not name (a member
that joined before manifests named member logs) and a registry with no federation (a
federation of one) fall back to the log key pinned on first use and no cosignatures:
there is no witness to ask for.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from numbind.protocol import note
from numbind.protocol.bundle import FEDERATION_KEY_FILE, MANIFEST_FILE
from numbind.protocol.checkpoint import WitnessPolicy
from numbind.protocol.files import write_atomically
from numbind.protocol.log_errors import LogError
from numbind.protocol.manifest import (
    ManifestHolder,
    SignedManifest,
    StaleManifest,
    parse_federation_key,
)

__all__ = ["FederationTrust", "LogTrust"]


@dataclass(frozen=True)
class LogTrust:
    """What one checkpoint is checked against: the log key (vkey text) and the policy;
    `named` is True when both come from the signed manifest."""

    log_key: str | None
    policy: WitnessPolicy
    named: bool


class FederationTrust:
    """A bundle's pinned federation key and the newest manifest accepted under it.

    Contract: `offer` installs only a manifest that verifies under the pinned key and is
    newer than the held one (writing it back to the bundle); an older or equal one is
    ignored; anything else raises FederationError and the held manifest stays."""

    def __init__(self, holder: ManifestHolder, path: Path | None = None) -> None:
        self._holder = holder
        self._path = path

    @classmethod
    def from_bundle(cls, directory: Path) -> FederationTrust | None:
        """None for a bundle with no federation key (a federation of one)."""
        key_path = directory / FEDERATION_KEY_FILE
        if not key_path.exists():
            return None
        key = parse_federation_key(key_path.read_text(encoding="ascii"))
        manifest_path = directory / MANIFEST_FILE
        holder = ManifestHolder(key)
        if manifest_path.exists():
            holder.offer(manifest_path.read_bytes())
        return cls(holder, manifest_path)

    @property
    def held(self) -> SignedManifest | None:
        return self._holder.held

    def offer(self, data: bytes) -> bool:
        """True when `data` is a newer manifest, now held (and saved to the bundle)."""
        held = self._holder.held
        if not data or (held is not None and data == held.data):
            return False
        try:
            self._holder.offer(data)
        except StaleManifest:
            return False
        if self._path is not None:
            # Kept for the next run; a bundle on a read-only mount still holds it in memory.
            with contextlib.suppress(OSError):
                write_atomically(self._path, data, 0o600)
        return True

    def trust_for(self, offered_log_key: str) -> LogTrust | None:
        """The manifest's key and policy when the registry's log is one the manifest
        names (the hub's, or a member's own), else None (a log it does not name).

        The policy for registry R's log: cosigned by every OTHER registry of the manifest
        that declared a witness key (`Manifest.witness_policy(R)`). A log is the one under
        a key the manifest names, or any key claiming a named log's origin
        (`numbind.<federation>/log`, `numbind.<federation>/log/<member>`: no other log
        has it, so that is a forged log, and the manifest's key makes it fail as
        "unknown-key"). A hub that kept the origin it had before `federation init`
        (`numbind.local/log`) shares it with any member that did too, so there only the
        key itself identifies it."""
        held = self._holder.held
        if held is None:
            return None
        manifest = held.manifest
        named = manifest.logs()
        try:
            offered = note.Ed25519Verifier.parse(offered_log_key)
        except LogError:
            offered = None
        if offered is None:
            hub_log = manifest.log
            if hub_log is None:
                return None
            return LogTrust(hub_log.key, manifest.witness_policy(), True)
        own = f"numbind.{manifest.federation}/log"
        for owner, log in named:
            if offered.vkey() == log.key or (
                offered.name == log.origin and (log.origin + "/").startswith(own + "/")
            ):
                return LogTrust(log.key, manifest.witness_policy(owner.id), True)
        return None
