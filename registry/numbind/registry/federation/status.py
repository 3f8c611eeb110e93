"""What `numbind federation show` reports, and the interface replication fills in.

`show` asks a `ReplicationStatus` for each member's position in the hub's lifecycle log
and its lag. `StoreReplication` answers from this registry's store: at the hub, the last
sequence each member acked; at a member, its own cursor (and the hub's head as last
heard). Where nothing is known (no ack yet, a store that cannot be read) it is n/a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from numbind.registry.federation.files import Installed

__all__ = [
    "NoReplication",
    "PeerReplication",
    "ReplicationStatus",
    "StoreReplication",
    "describe",
]


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


class StoreReplication:
    """Positions and lags as this registry's store holds them, read once (a snapshot)."""

    def __init__(self, installed: Installed, database_url: str) -> None:
        from numbind.registry.storage import replication
        from numbind.registry.storage.db import Database, Session

        self._me = installed.member_id
        self._authority = installed.is_authority
        self._hub = installed.manifest.authority.id
        self._known: dict[str, PeerReplication] = {}
        db = Database(database_url)
        try:
            if self._authority:

                def read(s: Session) -> tuple[dict[str, tuple[int, int | None]], int, int]:
                    head, head_us = replication.head(s)
                    acks = {
                        m: (q, replication.recorded_at(s, q))
                        for m, q in replication.acks(s).items()
                    }
                    return acks, head, head_us

                acks, head, head_us = db.transact(read, write=False)
                self._known[self._me] = PeerReplication(head, 0.0)
                for member, (acked, at) in acks.items():
                    self._known[member] = PeerReplication(acked, _lag(acked, head, at, head_us))
            else:
                cur = db.transact(lambda s: replication.cursor_if_any(s, self._hub), write=False)
                if cur is not None:
                    self._known[self._me] = PeerReplication(
                        cur.applied_seq,
                        _lag(
                            cur.applied_seq,
                            cur.head_seq,
                            cur.applied_recorded_us,
                            cur.head_recorded_us,
                        ),
                    )
                    self._known[self._hub] = PeerReplication(cur.head_seq, 0.0)
        finally:
            db.close()

    def replication(self, member_id: str) -> PeerReplication:
        return self._known.get(member_id, PeerReplication())


def _lag(position: int, head: int, at_us: int | None, head_us: int) -> float | None:
    """Seconds between the newest entry applied and the newest entry there is."""
    if position >= head:
        return 0.0
    if not at_us:
        return None
    return max(0.0, (head_us - at_us) / 1e6)


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
                "witness_key": m.witness_key,
                # The registry's own log as the manifest names it (None: not named).
                "log_key": log.key if (log := manifest.log_of(m.id)) is not None else None,
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
        # The hub's log as the manifest names it (None: first-use pinning).
        "log": {"origin": manifest.log.origin, "key": manifest.log.key} if manifest.log else None,
        # The other registries' logs this registry witnesses (numbind.registry.federation.
        # witnessing): every log the manifest names but its own.
        "witnessing": [
            {"member": owner.id, "origin": log.origin}
            for owner, log in manifest.logs()
            if owner.id != installed.member_id
        ],
    }
