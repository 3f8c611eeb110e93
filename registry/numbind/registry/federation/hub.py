"""Hub actions on the federation files: init, add-member, remove-member, refresh.

Each takes the data dir's lock, is idempotent when re-run with the same input, signs the
next manifest version only when something changed (and holds it to the rule every member
applies before writing it), and raises a FederationError subclass with one clear line when
it refuses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from numbind.protocol.files import write_atomically
from numbind.protocol.manifest import (
    FederationSetupError,
    LogInfo,
    Manifest,
    Member,
    MemberRole,
    SignedManifest,
    TokenService,
    accept_manifest,
    check_address,
    check_federation_id,
    check_member_id,
    check_name,
    generate_federation_key,
    sign_manifest,
    witness_key_name,
)
from numbind.protocol.note import Ed25519Signer
from numbind.registry import log_key
from numbind.registry.config import Settings, client_address
from numbind.registry.datadir import ADMIN_BUNDLE, private_umask
from numbind.registry.federation.credentials import ensure_peer_cert, load_ca, server_name_warning
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.join import Grant, JoinRequest
from numbind.registry.federation.log_trust import give_bundle_trust
from numbind.registry.federation.token_keys import token_service as read_token_service

__all__ = [
    "HUB_ROLES",
    "MEMBER_ROLES",
    "AddResult",
    "InitResult",
    "SignResult",
    "add_member",
    "follow_token_keys",
    "init",
    "refresh",
    "remove_member",
]

HUB_ROLES: tuple[MemberRole, ...] = ("lifecycle-authority", "token-service")
MEMBER_ROLES: tuple[MemberRole, ...] = ("binding-registry",)


@dataclass(frozen=True)
class InitResult:
    installed: Installed
    created: bool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class AddResult:
    member: Member
    signed: SignedManifest
    added: bool  # False: the same request again; the grant carries the current manifest


@dataclass(frozen=True)
class SignResult:
    signed: SignedManifest
    changed: bool


def _now() -> int:
    return int(time.time())


def _hub(fed: FederationDir) -> tuple[Installed, Ed25519Signer]:
    installed = fed.require()
    key = fed.load_key()
    if key is None or not installed.is_authority:
        raise FederationSetupError(
            f"{fed.data_dir} is member {installed.member_id} of federation "
            f"{installed.manifest.federation}, not its hub; run this on the hub"
        )
    if key.verifier.vkey() != installed.key.vkey():
        raise FederationSetupError(f"{fed.key_path} does not match the pinned {fed.pin_path}")
    return installed, key


def _log_info(data_dir: Path, federation_id: str) -> LogInfo:
    """The hub's log as the manifest names it. A log keeps its origin: a hub that served
    before `federation init` keeps the key (and origin) it made then."""
    with private_umask():
        signer = log_key.load_or_create(data_dir, f"numbind.{federation_id}/log")
    return LogInfo(signer.name, signer.verifier.vkey())


def _hub_witness_key(data_dir: Path, federation_id: str, member_id: str) -> str:
    """The hub's own witness key (it witnesses every member's log), as the manifest names
    it: `numbind.<federation>/witness/<hub id>`."""
    with private_umask():
        signer = log_key.load_or_create_witness(data_dir)
    return signer.renamed(witness_key_name(federation_id, member_id)).verifier.vkey()


def _with_hub_witness(data_dir: Path, manifest: Manifest, members: list[Member]) -> list[Member]:
    """`members` with the hub's witness key named (a federation started before the hub
    witnessed members' logs gains it with the next version)."""
    hub = manifest.authority
    if hub.witness_key is not None:
        return members
    named = replace(hub, witness_key=_hub_witness_key(data_dir, manifest.federation, hub.id))
    return [named if m.id == hub.id else m for m in members]


def _sign_next(installed: Installed, key: Ed25519Signer, manifest: Manifest) -> SignedManifest:
    """Sign the next version; the hub holds itself to the rule every member applies."""
    signed = sign_manifest(manifest, key)
    accept_manifest(signed.data, installed.key, installed.signed)
    return signed


def init(
    settings: Settings,
    federation_id: str,
    *,
    member_id: str = "hub",
    name: str | None = None,
    address: str | None = None,
    token_service_address: str | None = None,
    binding_registry: bool = False,
) -> InitResult:
    """Start a federation with this registry as lifecycle authority and token service."""
    check_federation_id("--id", federation_id)
    check_member_id("--member-id", member_id)
    name = check_name("--name", name if name is not None else member_id)
    fed = FederationDir(settings.data_dir)
    with fed.locked():
        existing = fed.load()
        if existing is not None:
            if existing.manifest.federation == federation_id and fed.load_key() is not None:
                return InitResult(existing, False, ())
            raise FederationSetupError(
                f"{settings.data_dir} already holds federation {existing.manifest.federation} "
                f"as member {existing.member_id}; a registry belongs to one federation"
            )
        ca = load_ca(settings)
        known = client_address(settings.data_dir)
        address = address or (known[0] if known is not None else None)
        if not address:
            raise FederationSetupError(
                "no address for the hub: pass --address HOST:PORT (or record it once with "
                f"`numbind admin init --data-dir {settings.data_dir} --registry HOST:PORT`, or "
                "run this while `numbind serve` serves that data dir)"
            )
        check_address("--address", address)
        ts_address = check_address("--token-service", token_service_address or address)
        roles: tuple[MemberRole, ...] = HUB_ROLES + (MEMBER_ROLES if binding_registry else ())
        if ts_address != address:
            roles = tuple(r for r in roles if r != "token-service")
        token_service = read_token_service(settings, ts_address)

        key = fed.load_key()
        if key is None:
            key = generate_federation_key(federation_id)
            fed.write_key(key)
        elif key.name != generate_federation_key(federation_id).name:
            raise FederationSetupError(
                f"{fed.key_path} is the key of another federation ({key.name}); move it away "
                "to start a new one"
            )
        manifest = Manifest(
            federation=federation_id,
            version=1,
            issued_at=_now(),
            token_service=token_service,
            members=(
                Member(
                    id=member_id,
                    name=name,
                    address=address,
                    ca_pem=ca.cert_pem.decode("ascii"),
                    roles=tuple(sorted(roles)),
                    witness_key=_hub_witness_key(settings.data_dir, federation_id, member_id),
                ),
            ),
            log=_log_info(settings.data_dir, federation_id),
        )
        signed = sign_manifest(manifest, key)
        fed.write_pin(key.verifier)
        fed.write_self(member_id)
        ensure_peer_cert(fed, ca, member_id)
        fed.write_manifest(signed)
        give_bundle_trust(settings.data_dir, settings.data_dir / ADMIN_BUNDLE)
        warnings = [server_name_warning(settings, ca, address)]
        if "binding-registry" not in roles:
            warnings.append(_platforms_left_behind(settings))
        return InitResult(fed.require(), True, tuple(w for w in warnings if w))


def _platforms_left_behind(settings: Settings) -> str | None:
    """A registry that served platforms before `federation init` serves them no more as a
    hub without the binding-registry role: its platforms' calls are refused and holder
    calls leave their bindings out. Said at once, while --binding-registry can still be
    chosen (the store was opened and migrated by read_token_service just before)."""
    from numbind.registry.app import open_database
    from numbind.registry.domain.types import now_us
    from numbind.registry.storage import stats

    db = open_database(settings)
    try:
        held = db.transact(lambda s: stats.read(s, now_us()), write=False)
    finally:
        db.close()
    if held.platforms == 0:
        return None
    return (
        f"this registry has {held.platforms} platform(s) with {held.active_bindings:,} live "
        "bindings; as a hub without --binding-registry it serves them no more once it "
        "restarts (their calls are refused, holder calls leave their bindings out). To keep "
        f"them, before any member joins: move {settings.data_dir / 'federation'} away and run "
        "init again with --binding-registry"
    )


def add_member(settings: Settings, request_path: Path, out: Path) -> AddResult:
    """Add the requesting registry, sign the next version, write its grant to `out`."""
    fed = FederationDir(settings.data_dir)
    req = JoinRequest.read(request_path)
    if not out.parent.is_dir():
        raise FederationSetupError(f"--out {out}: directory {out.parent} does not exist")
    with fed.locked():
        installed, key = _hub(fed)
        manifest = installed.manifest
        existing = manifest.member(req.id)
        witness_key = req.witness_key(manifest.federation)
        member_log = req.log_key(manifest.federation)
        wanted = Member(
            req.id, req.name, req.address, req.ca_pem, MEMBER_ROLES, witness_key, member_log
        )
        if existing is not None:
            if (
                (existing.name, existing.address, existing.ca_pem)
                != (req.name, req.address, req.ca_pem)
                or (existing.witness_key is not None and existing.witness_key != witness_key)
                or (existing.log_key is not None and existing.log_key != member_log)
            ):
                raise FederationSetupError(
                    f"member id {req.id} is already in federation {manifest.federation} with "
                    f"address {existing.address} and another CA, name, witness or log key; "
                    "remove it first "
                    f"(`numbind federation remove-member {req.id}`) or pick another id"
                )
            signed, member, added = installed.signed, existing, False
            if (existing.witness_key is None and witness_key is not None) or (
                existing.log_key is None and member_log is not None
            ):
                # A member that joined before manifests named witness (or member log) keys
                # sends them by requesting again: the next version names them.
                members = [wanted if m.id == req.id else m for m in manifest.members]
                members = _with_hub_witness(settings.data_dir, manifest, members)
                successor = manifest.successor(issued_at=_now(), members=members)
                signed, member, added = _sign_next(installed, key, successor), wanted, True
        else:
            for m in manifest.members:
                if m.address == req.address:
                    raise FederationSetupError(
                        f"address {req.address} is already member {m.id}'s; each member "
                        "serves at its own address"
                    )
                if m.ca_spki == wanted.ca_spki:
                    raise FederationSetupError(
                        f"the request's CA is already member {m.id}'s; each member needs its "
                        "own CA (it is what its registry identity is checked against)"
                    )
            members = _with_hub_witness(settings.data_dir, manifest, [*manifest.members, wanted])
            successor = manifest.successor(issued_at=_now(), members=members)
            signed = _sign_next(installed, key, successor)
            member, added = wanted, True
        authority = signed.manifest.authority
        grant = Grant(
            member=req.id,
            federation_key=installed.key.vkey(),
            hub_id=authority.id,
            hub_address=authority.address,
            hub_ca_pem=authority.ca_pem,
            manifest=signed.data,
        ).to_bytes()
        # The hub's manifest first: a grant must never carry a version the hub does not hold
        # (it would sign a different one under that number next, and members would see a
        # fork). A failure writing the grant is repaired by running the same command again.
        if added:
            fed.write_manifest(signed)
        write_atomically(out, grant, 0o644)
        return AddResult(member, signed, added)


def remove_member(settings: Settings, member_id: str) -> SignResult:
    """Drop a member and sign the next version; its registry identity stops counting."""
    check_member_id("member id", member_id)
    fed = FederationDir(settings.data_dir)
    with fed.locked():
        installed, key = _hub(fed)
        manifest = installed.manifest
        if manifest.member(member_id) is None:
            return SignResult(installed.signed, False)
        if manifest.authority.id == member_id:
            raise FederationSetupError(
                f"{member_id} is the lifecycle authority; a federation cannot remove its hub"
            )
        members = [m for m in manifest.members if m.id != member_id]
        signed = _sign_next(installed, key, manifest.successor(issued_at=_now(), members=members))
        fed.write_manifest(signed)
        return SignResult(signed, True)


def refresh(settings: Settings, *, address: str | None = None) -> SignResult:
    """Re-read the token keys (after a rotation) and, with `address`, move the hub; sign
    the next version if anything changed."""
    fed = FederationDir(settings.data_dir)
    with fed.locked():
        installed, key = _hub(fed)
        manifest = installed.manifest
        hub = manifest.authority
        new_address = check_address("--address", address) if address else hub.address
        ts_address = manifest.token_service.address
        if "token-service" in hub.roles:
            ts_address = new_address
        token_service = read_token_service(settings, ts_address)
        members = [
            replace(m, address=new_address) if m.id == hub.id else m for m in manifest.members
        ]
        # A manifest from before logs were named in it gains the hub's log (and the hub's
        # witness key, for the members' own logs) here.
        members = _with_hub_witness(settings.data_dir, manifest, members)
        log = manifest.log or _log_info(settings.data_dir, manifest.federation)
        if (token_service, members, log) == (
            manifest.token_service,
            list(manifest.members),
            manifest.log,
        ):
            return SignResult(installed.signed, False)
        successor = manifest.successor(
            issued_at=_now(), members=members, token_service=token_service, log=log
        )
        signed = _sign_next(installed, key, successor)
        fed.write_manifest(signed)
        return SignResult(signed, True)


def follow_token_keys(fed: FederationDir, token_service: TokenService) -> SignResult:
    """A running hub's token keys changed (`admin rotate-key`, `retire-key`): sign the
    next version listing them, so members take the new key at once (they accept a token
    service's answer only under keys the manifest lists). The address stays the
    manifest's; nothing is signed when the keys are those it already lists."""
    with fed.locked():
        installed, key = _hub(fed)
        manifest = installed.manifest
        wanted = TokenService(
            manifest.token_service.address, token_service.active_key_id, token_service.keys
        )
        if wanted == manifest.token_service:
            return SignResult(installed.signed, False)
        successor = manifest.successor(issued_at=_now(), token_service=wanted)
        signed = _sign_next(installed, key, successor)
        fed.write_manifest(signed)
        return SignResult(signed, True)
