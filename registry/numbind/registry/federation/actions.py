"""Operator actions on a registry's federation files (`numbind federation ...`).

On the hub: `init` makes the federation key and manifest v1; `add_member` turns a join
request into the next manifest version and a grant; `remove_member` and `refresh` (new
token keys after a rotation, a new hub address) sign the next version too. On a member:
`request` writes a join request; `accept` installs a grant (pinning the federation key the
first time) or a newer grant later. Each action takes the data dir's lock, is idempotent
when re-run with the same input, and raises a FederationError subclass with one clear
line when it refuses.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from numbind.protocol.files import write_atomically
from numbind.protocol.manifest import (
    FederationError,
    FederationSetupError,
    MalformedJoinFile,
    Manifest,
    Member,
    MemberRole,
    SignedManifest,
    TokenPublicKey,
    TokenService,
    accept_manifest,
    canonical_pem,
    check_address,
    check_federation_id,
    check_member_id,
    check_name,
    generate_federation_key,
    parse_federation_key,
    sign_manifest,
)
from numbind.protocol.note import Ed25519Signer
from numbind.registry.config import Settings, served_address
from numbind.registry.federation.files import FederationDir, Installed
from numbind.registry.federation.join import Grant, JoinRequest
from numbind.registry.pki import CA_KEY_FILE, CertificateAuthority, PrincipalId

__all__ = [
    "AcceptResult",
    "AddResult",
    "InitResult",
    "RequestResult",
    "SignResult",
    "accept",
    "add_member",
    "init",
    "refresh",
    "remove_member",
    "request",
]

HUB_ROLES: tuple[MemberRole, ...] = ("lifecycle-authority", "token-service")
MEMBER_ROLES: tuple[MemberRole, ...] = ("binding-registry",)
# Renew this registry's peer certificate when it would expire sooner than this.
_PEER_CERT_RENEW = timedelta(days=30)


@dataclass(frozen=True)
class InitResult:
    installed: Installed
    created: bool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class RequestResult:
    request: JoinRequest
    ca_sha256: str
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


@dataclass(frozen=True)
class AcceptResult:
    installed: Installed
    previous_version: int | None
    changed: bool
    pinned: bool  # True when this accept pinned the federation key


# -- helpers -----------------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def _ca(settings: Settings) -> CertificateAuthority:
    if not (settings.pki_dir / CA_KEY_FILE).exists():
        raise FederationSetupError(
            f"no registry CA in {settings.pki_dir}; run `numbind admin init --data-dir "
            f"{settings.data_dir}` first"
        )
    try:
        return CertificateAuthority.load(settings.pki_dir)
    except (OSError, ValueError) as exc:
        raise FederationSetupError(f"registry CA in {settings.pki_dir}: {exc}") from None


def _server_name_warning(settings: Settings, ca: CertificateAuthority, address: str) -> str | None:
    """Peers will dial `address` and check the server certificate against its host."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    path = settings.pki_dir / "server.pem"
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return f"cannot read the server certificate {path}; peers will not reach {address}"
    try:
        PolicyBuilder().store(Store([ca.certificate])).build_server_verifier(subject).verify(
            cert, []
        )
    except VerificationError:
        return (
            f"the server certificate {path} does not name {host}: peers dialling {address} "
            "will refuse it; issue one for that host before serving the federation"
        )
    return None


def _token_service(settings: Settings, address: str) -> TokenService:
    """The token service's public keys, from this registry's key ring."""
    from numbind.registry.errors import NumbindError
    from numbind.registry.keys import KeyRing
    from numbind.registry.storage import migrate
    from numbind.registry.storage.db import Database

    db = Database(settings.effective_database_url)
    try:
        migrate.upgrade(db.write_engine)
        ring = KeyRing(db, settings.keys_dir)
        ring.reload()
        active = ring.active()
        live = ring.live()
    except NumbindError as exc:
        raise FederationSetupError(f"token keys: {exc.message}") from None
    finally:
        db.close()
    keys = sorted((TokenPublicKey(k.key_id, k.public_key) for k in live), key=lambda k: k.key_id)
    return TokenService(address=address, active_key_id=active.key_id, keys=tuple(keys))


def _ensure_peer_cert(fed: FederationDir, ca: CertificateAuthority, member_id: str) -> None:
    """This registry's peer certificate, spiffe://numbind/registry/<id> under its own CA;
    kept if it is already that and not close to expiry."""
    principal = PrincipalId("registry", member_id)
    try:
        cert = x509.load_pem_x509_certificate(fed.peer_cert_path.read_bytes())
        key = serialization.load_pem_private_key(fed.peer_key_path.read_bytes(), None)
        verified = (
            PolicyBuilder()
            .store(Store([ca.certificate]))
            .time(datetime.now(UTC) + _PEER_CERT_RENEW)
            .build_client_verifier()
            .verify(cert, [])
        )
        same_key = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if same_key and verified.subjects == [x509.UniformResourceIdentifier(principal.uri)]:
            return
    except (OSError, ValueError, TypeError, VerificationError):
        pass
    new_key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = ca.issue_client_cert(principal, new_key.public_key())
    key_pem = new_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fed.write_peer(cert_pem, key_pem)


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


def _sign_next(installed: Installed, key: Ed25519Signer, manifest: Manifest) -> SignedManifest:
    """Sign the next version; the hub holds itself to the rule every member applies."""
    signed = sign_manifest(manifest, key)
    accept_manifest(signed.data, installed.key, installed.signed)
    return signed


# -- hub ---------------------------------------------------------------------------------


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
        ca = _ca(settings)
        address = address or served_address(settings.data_dir)
        if not address:
            raise FederationSetupError(
                f"no address for the hub: pass --address HOST:PORT or run `numbind serve "
                f"--data-dir {settings.data_dir}` once so it records where it listens"
            )
        check_address("--address", address)
        ts_address = check_address("--token-service", token_service_address or address)
        roles: tuple[MemberRole, ...] = HUB_ROLES + (MEMBER_ROLES if binding_registry else ())
        if ts_address != address:
            roles = tuple(r for r in roles if r != "token-service")
        token_service = _token_service(settings, ts_address)

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
                ),
            ),
        )
        signed = sign_manifest(manifest, key)
        fed.write_pin(key.verifier)
        fed.write_self(member_id)
        _ensure_peer_cert(fed, ca, member_id)
        fed.write_manifest(signed)
        warning = _server_name_warning(settings, ca, address)
        return InitResult(fed.require(), True, (warning,) if warning else ())


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
        wanted = Member(req.id, req.name, req.address, req.ca_pem, MEMBER_ROLES)
        if existing is not None:
            if (existing.name, existing.address, existing.ca_pem) != (
                req.name,
                req.address,
                req.ca_pem,
            ):
                raise FederationSetupError(
                    f"member id {req.id} is already in federation {manifest.federation} with "
                    f"address {existing.address} and another CA or name; remove it first "
                    f"(`numbind federation remove-member {req.id}`) or pick another id"
                )
            signed, member, added = installed.signed, existing, False
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
            successor = manifest.successor(issued_at=_now(), members=[*manifest.members, wanted])
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
        token_service = _token_service(settings, ts_address)
        members = [
            Member(m.id, m.name, new_address, m.ca_pem, m.roles) if m.id == hub.id else m
            for m in manifest.members
        ]
        if token_service == manifest.token_service and new_address == hub.address:
            return SignResult(installed.signed, False)
        successor = manifest.successor(
            issued_at=_now(), members=members, token_service=token_service
        )
        signed = _sign_next(installed, key, successor)
        fed.write_manifest(signed)
        return SignResult(signed, True)


# -- member ------------------------------------------------------------------------------


def request(
    settings: Settings, member_id: str, address: str, out: Path, *, name: str | None = None
) -> RequestResult:
    """Write a join request for this registry (its id, address and CA certificate)."""
    check_member_id("--id", member_id)
    ca = _ca(settings)
    req = JoinRequest(
        id=member_id,
        name=name if name is not None else member_id,
        address=address,
        ca_pem=ca.cert_pem.decode("ascii"),
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
    warning = _server_name_warning(settings, ca, address)
    fingerprint = Member(req.id, req.name, req.address, req.ca_pem, MEMBER_ROLES).ca_fingerprint
    return RequestResult(req, fingerprint, (warning,) if warning else ())


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
        ca = _ca(settings)
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
        _ensure_peer_cert(fed, ca, grant.member)
        if changed:
            fed.write_manifest(signed)
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
