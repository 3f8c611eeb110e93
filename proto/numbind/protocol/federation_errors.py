"""The one error tree of federation files: manifests, join files, peer identities.

Checks return None or raise one of these; none returns a bool. Every message names what
was refused and why (a field, a version, a key), in one line an operator can act on.

    FederationError               anything the federation's files were refused for
    ├── MalformedManifest         not a manifest note, or a body that breaks a rule (named)
    ├── ManifestSignatureError    not signed by the pinned key, or the signature fails
    ├── WrongFederation           signed for another federation id
    ├── StaleManifest             version not newer than the one held
    │   └── ForkedManifest        same version as the held one, different content
    ├── MalformedJoinFile         a join request or grant of the wrong shape
    ├── PeerRefused               a caller certificate naming an identity its CA may not vouch
    │                             for (another member's, or a local role from a member's CA)
    └── FederationSetupError      an operator action the data dir's state refuses
"""

from __future__ import annotations

__all__ = [
    "FederationError",
    "FederationSetupError",
    "ForkedManifest",
    "MalformedJoinFile",
    "MalformedManifest",
    "ManifestSignatureError",
    "PeerRefused",
    "StaleManifest",
    "WrongFederation",
]


class FederationError(Exception):
    """Root of every refusal about a federation's files; `message` is the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedManifest(FederationError):
    """Not a manifest note, or a body that is not canonical or breaks a rule."""


class ManifestSignatureError(FederationError):
    """The note is not signed by the pinned federation key, or that signature fails."""


class WrongFederation(FederationError):
    """The manifest is for another federation than the one held or pinned."""


class StaleManifest(FederationError):
    """The manifest's version is not newer than the one held."""


class ForkedManifest(StaleManifest):
    """Same version as the held manifest but different content: the federation key signed
    two manifests with one version. Both are evidence; the held one stays."""


class MalformedJoinFile(FederationError):
    """A join request or grant file that does not have the shape it must."""


class PeerRefused(FederationError):
    """A caller certificate that names an identity its issuer may not vouch for: a registry
    identity not under that member's CA, or a local role not under the registry's own CA."""


class FederationSetupError(FederationError):
    """An operator action the data dir's state refuses (not initialised, a duplicate
    member, a grant for another registry, ...); the message says what to do."""
