"""The federation manifest: who is in a federation, signed with the federation's Ed25519 key.

A manifest names the federation, its version (a strictly increasing integer), when it was
issued, the token service (its address and the public keys tokens are made under, by key
id) and every member registry: id, display name, address, CA certificate and roles. The
lifecycle authority (the hub) is the one member with the ``lifecycle-authority`` role.

Encoding. A manifest travels as a C2SP signed note (`numbind.protocol.note`) whose text is
two lines::

    numbind/federation-manifest/v1
    {"federation":"demo","issued_at":1700000000,"members":[...],"token_service":{...},"version":3}

signed by the key named ``numbind.<federation id>/federation``. Why this shape:

- A signed note carries its signature beside the exact bytes it covers, names the key by
  (name, key id) so a key rotation can double-sign, and is the format the verifiable log's
  checkpoints already use (one signing and opening path to review, not two).
- The first line is a domain separator: nothing else the federation key might ever sign
  (a checkpoint, a future document type) can be replayed as a manifest.
- The body is canonical JSON (keys sorted, no whitespace, ASCII only, integers only, no
  duplicate keys), so one manifest has exactly one encoding: equal manifests are equal
  bytes, and two parsers cannot read one body two ways. A receiver refuses a body that is
  not in that form rather than normalising it.

Sign bytes, not objects (STYLE 7): `open_manifest` checks the signature over the bytes it
received before it parses anything, and keeps those bytes; nothing is re-serialised to be
verified. `accept_manifest` is the one acceptance rule every holder (registry or SDK) runs:
signed by the pinned federation key, the same federation, and a strictly newer version.

    FederationError               anything the federation's files were refused for
    ├── MalformedManifest         not a manifest note, or a body that breaks a rule (named)
    ├── ManifestSignatureError    not signed by the pinned key, or the signature fails
    ├── WrongFederation           signed for another federation id
    ├── StaleManifest             version not newer than the one held
    │   └── ForkedManifest        same version as the held one, different content
    ├── MalformedJoinFile         a join request or grant of the wrong shape
    ├── PeerRefused               a peer certificate that is no member's registry identity
    └── FederationSetupError      an operator action the data dir's state refuses
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from numbind.protocol import note
from numbind.protocol.log_errors import BadSignature, NoKnownSignature, NoteError
from numbind.protocol.voprf import ELEMENT_BYTES, VoprfError, deserialize_element

__all__ = [
    "FORMAT_LINE",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "REGISTRY_SPIFFE_PREFIX",
    "ROLES",
    "FederationError",
    "FederationSetupError",
    "ForkedManifest",
    "MalformedJoinFile",
    "MalformedManifest",
    "Manifest",
    "ManifestHolder",
    "ManifestSignatureError",
    "Member",
    "MemberRole",
    "PeerRefused",
    "SignedManifest",
    "StaleManifest",
    "TokenPublicKey",
    "TokenService",
    "WrongFederation",
    "accept_manifest",
    "canonical_pem",
    "check_address",
    "check_ca_pem",
    "check_federation_id",
    "check_member_id",
    "check_name",
    "federation_key_name",
    "generate_federation_key",
    "open_manifest",
    "parse_federation_key",
    "sign_manifest",
]

FORMAT_LINE = "numbind/federation-manifest/v1"
REGISTRY_SPIFFE_PREFIX = "spiffe://numbind/registry/"
# A manifest is read whole into memory by every member and SDK: bound what that costs.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_MEMBERS = 1000
MAX_TOKEN_KEYS = 64
MAX_NAME_CHARS = 100
# JSON numbers above 2^53 lose precision in most other languages' parsers.
MAX_VERSION = 2**53 - 1

MemberRole = Literal["lifecycle-authority", "token-service", "binding-registry"]
ROLES: tuple[MemberRole, ...] = get_args(MemberRole)

# The principal id rule (numbind.registry.pki, numbind.protocol.bundle).
_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- errors ------------------------------------------------------------------------------


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
    """A peer certificate that is not a member's registry identity under that member's CA."""


class FederationSetupError(FederationError):
    """An operator action the data dir's state refuses (not initialised, a duplicate
    member, a grant for another registry, ...); the message says what to do."""


# -- field rules -------------------------------------------------------------------------


def _bad(where: str, got: object, want: str) -> MalformedManifest:
    text = repr(got)
    if len(text) > 80:
        text = text[:77] + "..."
    return MalformedManifest(f"{where}: got {text}, want {want}")


def check_member_id(where: str, value: object) -> str:
    """A member id follows the principal id rule: [a-z0-9][a-z0-9._-]{0,62}."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise _bad(where, value, "an id matching [a-z0-9][a-z0-9._-]{0,62}")
    return value


def check_federation_id(where: str, value: object) -> str:
    """A federation id follows the same rule (it names keys and log origins)."""
    return check_member_id(where, value)


def check_address(where: str, value: object) -> str:
    """HOST:PORT with a DNS name or IP host, port 1-65535; IPv6 hosts as [addr]:port."""
    if not isinstance(value, str) or len(value) > 300:
        raise _bad(where, value, "HOST:PORT")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(where, value, "HOST:PORT with a port in 1-65535")
    if port != str(int(port)):
        raise _bad(where, value, "a port without leading zeroes")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(where, value, "[IPv6]:PORT") from None
        return value
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host):
        raise _bad(where, value, "HOST:PORT with a DNS name or IPv4 host (IPv6 as [addr])")
    return value


def check_name(where: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_NAME_CHARS
        or _CONTROL.search(value)
    ):
        raise _bad(where, value, f"a display name of 1-{MAX_NAME_CHARS} printable characters")
    return value


def check_ca_pem(where: str, pem: str) -> x509.Certificate:
    """Exactly one PEM certificate, in canonical PEM, marked as a CA."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        raise _bad(where, pem, "one PEM CA certificate") from None
    if len(certs) != 1:
        raise _bad(where, f"{len(certs)} certificates", "exactly one CA certificate")
    cert = certs[0]
    if cert.public_bytes(serialization.Encoding.PEM).decode("ascii") != pem:
        raise _bad(where, pem, "the certificate in canonical PEM (no extra text)")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise _bad(where, "no BasicConstraints", "a CA certificate") from None
    except ValueError as exc:
        raise _bad(where, str(exc), "a CA certificate with well-formed extensions") from None
    if not constraints.ca:
        raise _bad(where, "BasicConstraints ca=False", "a CA certificate")
    return cert


def canonical_pem(pem: str | bytes) -> str:
    """The canonical PEM of one certificate (what a manifest holds)."""
    raw = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(raw)
    except ValueError:
        raise MalformedManifest("ca_pem: not a PEM certificate") from None
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- the manifest ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPublicKey:
    """One public key of the token service (a canonical ristretto255 element)."""

    key_id: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not _KEY_ID_RE.fullmatch(self.key_id):
            raise _bad("token_service.keys", self.key_id, "a key id of 1-64 lowercase hex digits")
        try:
            deserialize_element(self.public_key)
        except VoprfError:
            raise _bad(
                f"token_service.keys.{self.key_id}",
                self.public_key.hex(),
                f"a canonical ristretto255 element of {ELEMENT_BYTES} bytes",
            ) from None


@dataclass(frozen=True)
class TokenService:
    """Where platforms' members forward tokenisation, and the keys tokens are made under."""

    address: str
    active_key_id: str
    keys: tuple[TokenPublicKey, ...]

    def __post_init__(self) -> None:
        check_address("token_service.address", self.address)
        if not 1 <= len(self.keys) <= MAX_TOKEN_KEYS:
            raise _bad("token_service.keys", f"{len(self.keys)} keys", f"1-{MAX_TOKEN_KEYS}")
        ids = [k.key_id for k in self.keys]
        if ids != sorted(set(ids)):
            raise _bad("token_service.keys", ids, "distinct key ids in ascending order")
        if self.active_key_id not in ids:
            raise _bad("token_service.active_key_id", self.active_key_id, f"one of {ids}")

    def key(self, key_id: str) -> TokenPublicKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)


@dataclass(frozen=True)
class Member:
    """One registry of the federation. Its peer identity is `uri`, and only a certificate
    issued under `ca_pem` may carry it."""

    id: str
    name: str
    address: str
    ca_pem: str
    roles: tuple[MemberRole, ...]
    ca_certificate: x509.Certificate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"members[{self.id!r}]" if isinstance(self.id, str) else "members[]"
        check_member_id(f"{where}.id", self.id)
        check_name(f"{where}.name", self.name)
        check_address(f"{where}.address", self.address)
        object.__setattr__(self, "ca_certificate", check_ca_pem(f"{where}.ca_pem", self.ca_pem))
        if (
            not self.roles
            or any(r not in ROLES for r in self.roles)
            or list(self.roles) != sorted(set(self.roles))
        ):
            raise _bad(f"{where}.roles", list(self.roles), f"distinct, sorted roles from {ROLES}")

    @property
    def uri(self) -> str:
        """The member's registry identity, `spiffe://numbind/registry/<id>`."""
        return f"{REGISTRY_SPIFFE_PREFIX}{self.id}"

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 of the CA certificate's DER, in hex (what operators compare by phone)."""
        der = self.ca_certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    @property
    def ca_spki(self) -> bytes:
        """The CA's public key (DER SubjectPublicKeyInfo): what "one CA per member" compares."""
        return self.ca_certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class Manifest:
    """A federation manifest body; the constructor refuses whatever the rules forbid."""

    federation: str
    version: int
    issued_at: int
    token_service: TokenService
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        check_federation_id("federation", self.federation)
        _check_int("version", self.version, 1, MAX_VERSION)
        _check_int("issued_at", self.issued_at, 0, 2**63 - 1)
        if not 1 <= len(self.members) <= MAX_MEMBERS:
            raise _bad("members", f"{len(self.members)} members", f"1-{MAX_MEMBERS}")
        ids = [m.id for m in self.members]
        if ids != sorted(set(ids)):
            raise _bad("members", ids, "distinct member ids in ascending order")
        _unique("address", [(m.id, m.address) for m in self.members])
        # One CA per member: a CA shared by two members would let either mint the other's
        # registry identity.
        _unique("ca_pem (CA key)", [(m.id, m.ca_spki.hex()) for m in self.members])
        authorities = [m.id for m in self.members if "lifecycle-authority" in m.roles]
        if len(authorities) != 1:
            raise _bad("members.roles", authorities, "exactly one lifecycle-authority")
        token_services = [m for m in self.members if "token-service" in m.roles]
        if len(token_services) > 1:
            raise _bad("members.roles", [m.id for m in token_services], "one token-service")
        if token_services and token_services[0].address != self.token_service.address:
            raise _bad(
                "token_service.address",
                self.token_service.address,
                f"{token_services[0].address}, the address of token-service member "
                f"{token_services[0].id}",
            )

    @property
    def authority(self) -> Member:
        """The lifecycle authority (the hub)."""
        return next(m for m in self.members if "lifecycle-authority" in m.roles)

    @property
    def key_name(self) -> str:
        return federation_key_name(self.federation)

    @property
    def issued_at_text(self) -> str:
        return datetime.fromtimestamp(self.issued_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    def successor(
        self, *, issued_at: int, members: Iterable[Member] | None = None, **changes: Any
    ) -> Manifest:
        """The next version with `changes` (members re-sorted by id)."""
        if members is not None:
            changes["members"] = tuple(sorted(members, key=lambda m: m.id))
        return replace(self, version=self.version + 1, issued_at=issued_at, **changes)

    def text(self) -> bytes:
        """The note text: format line and canonical JSON, each ending in a newline."""
        return f"{FORMAT_LINE}\n{_canonical(self._to_json())}\n".encode("ascii")

    def _to_json(self) -> dict[str, Any]:
        return {
            "federation": self.federation,
            "version": self.version,
            "issued_at": self.issued_at,
            "token_service": {
                "address": self.token_service.address,
                "active_key_id": self.token_service.active_key_id,
                "keys": {
                    k.key_id: base64.b64encode(k.public_key).decode()
                    for k in self.token_service.keys
                },
            },
            "members": [
                {
                    "id": m.id,
                    "name": m.name,
                    "address": m.address,
                    "ca_pem": m.ca_pem,
                    "roles": list(m.roles),
                }
                for m in self.members
            ],
        }


def _check_int(where: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(where, value, f"an integer in {low}..{high}")


def _unique(what: str, pairs: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for member_id, value in pairs:
        if value in seen:
            raise MalformedManifest(
                f"members: {seen[value]} and {member_id} share one {what}, want one each"
            )
        seen[value] = member_id


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# -- parsing a verified body -----------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad("manifest", key, "each JSON key once")
        out[key] = value
    return out


def _no_floats(text: str) -> Any:
    raise _bad("manifest", text, "integers only (no fractions, exponents, NaN or Infinity)")


def _object(where: str, value: object, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, type(value).__name__, "a JSON object")
    if set(value) != keys:
        raise _bad(where, sorted(value), f"exactly the fields {sorted(keys)}")
    return value


def _string(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise _bad(where, type(value).__name__, "a string")
    return value


def _parse_body(line: str) -> Manifest:
    try:
        raw = json.loads(
            line,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_floats,
            parse_constant=_no_floats,
        )
    except ValueError as exc:
        if isinstance(exc, MalformedManifest):
            raise
        raise MalformedManifest(f"manifest: not JSON ({exc})") from None
    if _canonical(raw) != line:
        raise MalformedManifest("manifest: body is not canonical JSON (sorted keys, no spaces)")
    body = _object(
        "manifest", raw, {"federation", "version", "issued_at", "token_service", "members"}
    )
    ts = _object("token_service", body["token_service"], {"address", "active_key_id", "keys"})
    if not isinstance(ts["keys"], dict):
        raise _bad("token_service.keys", type(ts["keys"]).__name__, "a JSON object")
    token_keys = []
    for key_id, b64 in ts["keys"].items():
        try:
            public = note.b64decode(_string(f"token_service.keys.{key_id}", b64), "public key")
        except ValueError as exc:
            raise MalformedManifest(f"token_service.keys.{key_id}: {exc}") from None
        token_keys.append(TokenPublicKey(key_id, public))
    if not isinstance(body["members"], list):
        raise _bad("members", type(body["members"]).__name__, "a JSON array")
    members = []
    for i, item in enumerate(body["members"]):
        m = _object(f"members[{i}]", item, {"id", "name", "address", "ca_pem", "roles"})
        if not isinstance(m["roles"], list):
            raise _bad(f"members[{i}].roles", type(m["roles"]).__name__, "a JSON array")
        members.append(
            Member(
                id=_string(f"members[{i}].id", m["id"]),
                name=_string(f"members[{i}].name", m["name"]),
                address=_string(f"members[{i}].address", m["address"]),
                ca_pem=_string(f"members[{i}].ca_pem", m["ca_pem"]),
                roles=tuple(m["roles"]),
            )
        )
    return Manifest(
        federation=_string("federation", body["federation"]),
        version=body["version"],
        issued_at=body["issued_at"],
        token_service=TokenService(
            address=_string("token_service.address", ts["address"]),
            active_key_id=_string("token_service.active_key_id", ts["active_key_id"]),
            keys=tuple(token_keys),
        ),
        members=tuple(members),
    )


# -- signing, opening, accepting --------------------------------------------------------


def federation_key_name(federation: str) -> str:
    """The note key name of a federation's key: `numbind.<federation id>/federation`."""
    return f"numbind.{check_federation_id('federation', federation)}/federation"


def generate_federation_key(federation: str) -> note.Ed25519Signer:
    """A new federation signing key; store `skey()` as a secret, publish `verifier.vkey()`."""
    return note.Ed25519Signer.generate(federation_key_name(federation))


@dataclass(frozen=True)
class SignedManifest:
    """A verified manifest and the exact bytes it arrived as (what is stored and passed on)."""

    data: bytes = field(repr=False)
    manifest: Manifest

    @property
    def version(self) -> int:
        return self.manifest.version


def sign_manifest(manifest: Manifest, key: note.Ed25519Signer) -> SignedManifest:
    """The signed note for `manifest`; refuses a key named for another federation."""
    if key.name != manifest.key_name:
        raise WrongFederation(
            f"federation key: named {key.name}, want {manifest.key_name} for "
            f"federation {manifest.federation}"
        )
    return SignedManifest(note.sign_note(manifest.text(), key), manifest)


def open_manifest(data: bytes, key: note.Ed25519Verifier) -> SignedManifest:
    """Verify `data` under the pinned federation `key`, then parse it.

    The signature is checked over the received bytes before the body is read; the key's
    name must be the manifest's federation's key name.
    """
    if not isinstance(data, bytes) or len(data) > MAX_MANIFEST_BYTES:
        size = len(data) if isinstance(data, bytes) else type(data).__name__
        raise _bad("manifest", size, f"at most {MAX_MANIFEST_BYTES} bytes")
    try:
        opened = note.open_note(data, [key])
    except BadSignature as exc:
        raise ManifestSignatureError(f"manifest: {exc.message}") from None
    except NoKnownSignature:
        raise ManifestSignatureError(
            f"manifest: not signed by the pinned federation key {key.name}+{key.key_id:08x}"
        ) from None
    except NoteError as exc:
        raise MalformedManifest(f"manifest: {exc.message}") from None
    lines = opened.text.decode("ascii", "replace").split("\n")
    if len(lines) != 3 or lines[0] != FORMAT_LINE or lines[2] != "":
        raise MalformedManifest(f"manifest: want the lines {FORMAT_LINE!r} and a JSON body")
    manifest = _parse_body(lines[1])
    if manifest.key_name != key.name:
        raise WrongFederation(
            f"manifest: for federation {manifest.federation}, but signed by {key.name}, "
            f"the key of another federation"
        )
    return SignedManifest(data, manifest)


def accept_manifest(
    data: bytes, key: note.Ed25519Verifier, held: SignedManifest | None
) -> SignedManifest:
    """The acceptance rule: `data` verifies under the pinned `key`, is for the held
    manifest's federation, and is strictly newer. Returns the new manifest or raises;
    the caller keeps `held` on any error."""
    offered = open_manifest(data, key)
    if held is None:
        return offered
    new, old = offered.manifest, held.manifest
    if new.federation != old.federation:
        raise WrongFederation(
            f"manifest: federation {new.federation}, want {old.federation} (the one held)"
        )
    if new.version == old.version and offered.data != held.data:
        raise ForkedManifest(
            f"manifest: version {new.version} differs from the held version {old.version}: "
            "the federation key signed two manifests with one version"
        )
    if new.version <= old.version:
        raise StaleManifest(
            f"manifest: version {new.version} is not newer than the held version {old.version}"
        )
    return offered


class ManifestHolder:
    """One pinned federation key and the newest manifest accepted under it (in memory).

    Contract: `offer` either replaces the held manifest with a strictly newer one that
    verifies under the pinned key, or raises and leaves the held one exactly as it was.
    """

    def __init__(self, key: note.Ed25519Verifier, held: SignedManifest | None = None) -> None:
        if held is not None:
            # Re-check what we are handed: a held manifest is one that passed this rule.
            held = open_manifest(held.data, key)
        self._key = key
        self._held = held

    @property
    def key(self) -> note.Ed25519Verifier:
        return self._key

    @property
    def held(self) -> SignedManifest | None:
        return self._held

    def offer(self, data: bytes) -> SignedManifest:
        self._held = accept_manifest(data, self._key, self._held)
        return self._held


def parse_federation_key(vkey: str) -> note.Ed25519Verifier:
    """A pinned federation key from its verifier-key text; the name must be a federation's."""
    try:
        key = note.Ed25519Verifier.parse(vkey.strip())
    except NoteError as exc:
        raise MalformedManifest(f"federation key: {exc.message}") from None
    match = re.fullmatch(r"numbind\.(.+)/federation", key.name)
    if not match or not _ID_RE.fullmatch(match.group(1)):
        raise MalformedManifest(
            f"federation key: named {key.name[:80]!r}, want numbind.<federation id>/federation"
        )
    return key
