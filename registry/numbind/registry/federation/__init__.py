"""Federation on a registry's side: its federation files, the operator actions, peer trust.

    files      DATA_DIR/federation/: the federation key (hub, 0600), the pinned key, the
               manifest as signed, which member this registry is, its peer certificate
    join       the join request and grant files operators exchange
    hub        init, add-member, remove-member, refresh (sign the next manifest version)
    member     request, accept (pin the federation key, install newer manifests)
    credentials  this registry's CA, server-name check and own peer certificate
    token_keys   the token service's public keys, read from the key ring
    peers      trust roots from the manifest; a verified peer certificate -> its member
    callers    any caller's certificate -> a local principal (own CA) or a member (its CA)
    status     what `federation show` reports; replication positions from the store
    serving    what `serve` plays by the manifest: roles, TLS roots, caller trust
    channel    mTLS channels to peers (PeerChannels), shared by every peer call
    forward    a member's Tokens service: forwarded to the federation's token service
    follower   a member's task following the hub's lifecycle log

The manifest itself (format, signature, acceptance rule, error tree) is pure and shared
with clients: `numbind.protocol.manifest`. With no federation installed a registry is a
federation of one, and nothing here is consulted.
"""

from __future__ import annotations

from numbind.registry.federation.callers import CallerTrust
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.peers import PeerTrust, peer_channel_credentials
from numbind.registry.federation.status import (
    NoReplication,
    PeerReplication,
    ReplicationStatus,
    StoreReplication,
    describe,
)

__all__ = [
    "CallerTrust",
    "FederationDir",
    "Installed",
    "NoReplication",
    "PeerReplication",
    "PeerTrust",
    "ReplicationStatus",
    "StoreReplication",
    "describe",
    "peer_channel_credentials",
]
