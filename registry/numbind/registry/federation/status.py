"""What `numbind federation show` reports, and the interface replication fills in.

Replication (issue 11, item 4) does not exist yet. `show` asks a `ReplicationStatus` for
each member's position in the hub's lifecycle log and its lag; until replication provides
one, `NoReplication` answers "unknown" and `show` prints n/a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from numbind.registry.federation.files import Installed

__all__ = ["NoReplication", "PeerReplication", "ReplicationStatus", "describe"]


@dataclass(frozen=True)
class PeerReplication:
    """One member's replication state; None where it is not known."""

    # The last lifecycle-log sequence the member applied (acked to the hub).
    position: int | None = None
    # How far it is behind the hub's newest event, in seconds.
    lag_seconds: float | None = None


class ReplicationStatus(Protocol):
    """Contract: answers from what this registry knows locally (its store or memory), fast
    and without network calls; a member it knows nothing about gets PeerReplication()."""

    def replication(self, member_id: str) -> PeerReplication: ...


class NoReplication:
    """Before replication exists: nothing is known about any member."""

    def replication(self, member_id: str) -> PeerReplication:
        return PeerReplication()


def describe(installed: Installed, replication: ReplicationStatus) -> dict[str, Any]:
    """The installed federation as a JSON-ready dict (the shape of `show --json`)."""
    manifest = installed.manifest
    ts = manifest.token_service
    members = []
    for m in manifest.members:
        rep = replication.replication(m.id)
        members.append(
            {
                "id": m.id,
                "name": m.name,
                "address": m.address,
                "roles": list(m.roles),
                "identity": m.uri,
                "ca_sha256": m.ca_fingerprint,
                "this_registry": m.id == installed.member_id,
                "replication": {"position": rep.position, "lag_seconds": rep.lag_seconds},
            }
        )
    return {
        "federation": manifest.federation,
        "version": manifest.version,
        "issued_at": manifest.issued_at_text,
        "federation_key": installed.key.vkey(),
        "this_registry": installed.member_id,
        "member_of_this_version": installed.me is not None,
        "lifecycle_authority": manifest.authority.id,
        "token_service": {
            "address": ts.address,
            "active_key_id": ts.active_key_id,
            "key_ids": [k.key_id for k in ts.keys],
        },
        "members": members,
    }
