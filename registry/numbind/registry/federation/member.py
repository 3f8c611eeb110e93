"""Member actions on the federation files: request (a join request) and accept (a grant).

`accept` pins the federation key the first time (or checks it against --expect-key), then
installs a manifest only if it verifies under the pinned key, is newer than the one held,
and names this registry under this registry's own CA; on any refusal nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from numbind.protocol.files import write_atomically
from numbind.protocol.manifest import (
    FederationError,
    FederationSetupError,
    MalformedJoinFile,
    Manifest,
    accept_manifest,
    canonical_pem,
    check_member_id,
    open_manifest,
    parse_federation_key,
)
from numbind.registry.config import Settings
from numbind.registry.datadir import ADMIN_BUNDLE, private_umask
from numbind.registry.federation.credentials import (
    ca_fingerprint,
    ensure_peer_cert,
    load_ca,
    server_name_warning,
)
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.join import Grant, JoinRequest
from numbind.registry.federation.log_trust import give_bundle_trust
from numbind.registry.log_key import load_or_create, load_or_create_witness

__all__ = ["AcceptResult", "RequestResult", "accept", "install_offered", "request"]


@dataclass(frozen=True)
class RequestResult:
    request: JoinRequest
    ca_sha256: str
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class AcceptResult:
    installed: Installed
    previous_version: int | None
    changed: bool
    pinned: bool  # True when this accept pinned the federation key


def request(
    settings: Settings, member_id: str, address: str, out: Path, *, name: str | None = None
) -> RequestResult:
    """Write a join request for this registry (its id, address and CA certificate)."""
    check_member_id("--id", member_id)
    ca = load_ca(settings)
    req = JoinRequest(
        id=member_id,
        name=name if name is not None else member_id,
        address=address,
        ca_pem=ca.cert_pem.decode("ascii"),
        # The key this registry will cosign the hub's log with: the manifest names it, so
        # clients require its cosignature by default.
        witness_public_key=_witness_key(settings.data_dir),
        # The key of this registry's own log (the orders it makes for its platforms): the
        # manifest names it, so the other registries witness that log and platforms pin it.
        log_public_key=_log_key(settings.data_dir),
    )
    installed = FederationDir(settings.data_dir).load()
    if installed is not None and installed.is_authority:
        raise FederationSetupError(
            f"{settings.data_dir} is the hub of federation {installed.manifest.federation}; "
            "the hub adds members, it does not request to join"
        )
    if installed is not None and installed.member_id != member_id:
        raise FederationSetupError(
            f"{settings.data_dir} is already member {installed.member_id} of federation "
            f"{installed.manifest.federation}; request with --id {installed.member_id}"
        )
    write_atomically(out, req.to_bytes(), 0o644)
    warning = server_name_warning(settings, ca, address)
    return RequestResult(req, ca_fingerprint(ca), (warning,) if warning else ())


def _log_key(data_dir: Path) -> bytes:
    with private_umask():
        return load_or_create(data_dir).verifier.public_key


def _witness_key(data_dir: Path) -> bytes:
    with private_umask():  # DATA_DIR/log/ must stay private (numbind.registry.datadir)
        return load_or_create_witness(data_dir).verifier.public_key


def accept(settings: Settings, grant_path: Path, *, expect_key: str | None = None) -> AcceptResult:
    """Install a grant: pin its federation key on first accept, else require the pinned
    one; install its manifest if it verifies, names this registry under this registry's
    own CA, and is newer than the one held."""
    grant = Grant.read(grant_path)
    fed = FederationDir(settings.data_dir)
    with fed.locked():
        if fed.load_key() is not None:
            raise FederationSetupError(
                f"{settings.data_dir} holds the federation key: it is the hub, which signs "
                "manifests rather than accepting them"
            )
        offered_key = parse_federation_key(grant.federation_key)
        if expect_key is not None and parse_federation_key(expect_key).vkey() != (
            offered_key.vkey()
        ):
            raise FederationSetupError(
                f"grant: federation key {offered_key.vkey()} is not the expected "
                f"{expect_key.strip()}"
            )
        pinned = fed.load_pin()
        installed = fed.load()
        if pinned is not None and pinned.vkey() != offered_key.vkey():
            raise FederationSetupError(
                f"grant: signed for key {offered_key.vkey()}, but this registry pinned "
                f"{pinned.vkey()}; a federation keeps its key"
            )
        key = pinned or offered_key
        held = installed.signed if installed is not None else None
        if held is not None and grant.manifest == held.data:
            signed = held
            changed = False
        else:
            signed = accept_manifest(grant.manifest, key, held)
            changed = True
        manifest = signed.manifest
        _check_grant_matches(grant, manifest)
        ca = load_ca(settings)
        own_ca = canonical_pem(ca.cert_pem)
        me = manifest.member(grant.member)
        if me is None:
            raise MalformedJoinFile(
                f"grant: member {grant.member} is not in the manifest (v{manifest.version})"
            )
        if me.ca_pem != own_ca:
            raise FederationSetupError(
                f"grant: the manifest names another CA for {grant.member} than this "
                f"registry's ({settings.pki_dir / 'ca.pem'}); was the request made from "
                "another data dir?"
            )
        self_id = fed.load_self()
        if self_id is not None and self_id != grant.member:
            raise FederationSetupError(
                f"grant: for member {grant.member}, but {settings.data_dir} is member {self_id}"
            )
        if pinned is None:
            fed.write_pin(key)
        fed.write_self(grant.member)
        ensure_peer_cert(fed, ca, grant.member)
        if changed:
            fed.write_manifest(signed)
        give_bundle_trust(settings.data_dir, settings.data_dir / ADMIN_BUNDLE)
        return AcceptResult(
            installed=fed.require(),
            previous_version=held.version if held is not None else None,
            changed=changed,
            pinned=pinned is None,
        )


def _check_grant_matches(grant: Grant, manifest: Manifest) -> None:
    hub = manifest.authority
    try:
        hub_ca = canonical_pem(grant.hub_ca_pem)
    except FederationError:
        raise MalformedJoinFile("grant: hub.ca_pem: not a PEM certificate") from None
    mismatches = [
        name
        for name, got, want in (
            ("hub.id", grant.hub_id, hub.id),
            ("hub.address", grant.hub_address, hub.address),
            ("hub.ca_pem", hub_ca, hub.ca_pem),
        )
        if got != want
    ]
    if mismatches:
        raise MalformedJoinFile(
            f"grant: {', '.join(mismatches)} disagree with the signed manifest's lifecycle "
            f"authority ({hub.id} at {hub.address}); the grant was altered"
        )


def install_offered(files: FederationDir, data: bytes) -> bool:
    """A manifest the hub sent over replication: installed if it verifies under the
    pinned key, is newer than the one held, and still names this registry under the same
    CA; True when installed. Not newer: False, nothing changes. Any other refusal raises
    (FederationError) and the held manifest stays."""
    with files.locked():
        installed = files.require()
        if data == installed.signed.data:
            return False
        offered = open_manifest(data, installed.key)
        if offered.manifest.version <= installed.manifest.version:
            return False
        signed = accept_manifest(data, installed.key, installed.signed)
        me, held_me = signed.manifest.member(installed.member_id), installed.me
        if me is None or held_me is None or me.ca_pem != held_me.ca_pem:
            raise FederationSetupError(
                f"manifest v{signed.manifest.version}: no longer names member "
                f"{installed.member_id} under its CA; keeping v{installed.manifest.version}"
            )
        files.write_manifest(signed)
        return True
