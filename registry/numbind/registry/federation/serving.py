"""What a registry serves, by the installed manifest: its roles, its peers, its TLS roots.

`numbind serve` loads this once at start. With no federation installed there is nothing to
load: the registry is a federation of one and plays every role, exactly as before
federation existed (`Serving` is then None wherever it is passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from numbind.protocol.manifest import FederationSetupError, Member
from numbind.registry.federation.callers import CallerTrust
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.manifest_changes import ManifestChanges
from numbind.registry.federation.peers import PeerTrust

__all__ = ["LiveCallers", "Serving"]


@dataclass(frozen=True)
class Serving:
    """This registry's place in an installed federation.

    Contract: `me` is in the manifest (a registry the manifest no longer names refuses to
    serve rather than serve as a stranger); `trust` and `callers` are built from the same
    manifest as the roles, so who may connect and what this registry does agree."""

    installed: Installed
    files: FederationDir
    trust: PeerTrust
    me: Member

    @classmethod
    def load(cls, data_dir: Path) -> Serving | None:
        files = FederationDir(data_dir)
        installed = files.load()
        if installed is None:
            return None
        me = installed.me
        if me is None:
            raise FederationSetupError(
                f"{data_dir} is member {installed.member_id}, which manifest "
                f"v{installed.manifest.version} of federation {installed.manifest.federation} "
                "no longer names; it cannot serve that federation"
            )
        return cls(installed, files, PeerTrust(installed.manifest), me)

    @property
    def federation(self) -> str:
        return self.installed.manifest.federation

    @property
    def hub(self) -> Member:
        """The lifecycle authority."""
        return self.installed.manifest.authority

    @property
    def is_authority(self) -> bool:
        return "lifecycle-authority" in self.me.roles

    @property
    def is_token_service(self) -> bool:
        return "token-service" in self.me.roles

    @property
    def holds_bindings(self) -> bool:
        return "binding-registry" in self.me.roles

    @property
    def token_service(self) -> Member | None:
        """The member that runs the token service (None: it runs apart from every member)."""
        return next(
            (m for m in self.installed.manifest.members if "token-service" in m.roles), None
        )

    def peers(self) -> list[Member]:
        """Every other member of the manifest."""
        return [m for m in self.installed.manifest.members if m.id != self.me.id]

    def callers(self, own_ca_pem: bytes) -> LiveCallers:
        return LiveCallers(self.files, own_ca_pem, CallerTrust(own_ca_pem, self.trust))


class LiveCallers:
    """Caller trust under the manifest installed now, not the one the server started
    with: a member that a newer manifest removes is refused at its next call, and one it
    adds is known at its first (its CA is a TLS root from then on: live.ServerRoots).

    Contract: `get` returns the same object while the manifest file is unchanged, so a
    caller may cache per object; a manifest that no longer verifies keeps the last good
    trust (the file is re-verified on every change)."""

    def __init__(self, files: FederationDir, own_ca_pem: bytes, first: CallerTrust) -> None:
        self._changes = ManifestChanges(files)
        self._own_ca = own_ca_pem
        self._trust = first

    def get(self) -> CallerTrust:
        installed = self._changes.poll()
        if installed is not None:
            self._trust = CallerTrust(self._own_ca, PeerTrust(installed.manifest))
        return self._trust
