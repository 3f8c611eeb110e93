"""The federation manifest's content: token service, members, and its one encoding.

The constructors refuse whatever the rules forbid, so a `Manifest` that exists is valid;
`Manifest.text()` is the exact note text that gets signed (see numbind.protocol.manifest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from numbind.protocol import note
from numbind.protocol.checkpoint import CosignatureVerifier, WitnessPolicy
from numbind.protocol.federation_errors import MalformedManifest
from numbind.protocol.log_errors import LogError
from numbind.protocol.manifest_rules import (
    check_address,
    check_ca_pem,
    check_federation_id,
    check_member_id,
    check_name,
    field_error,
)
from numbind.protocol.ristretto import ELEMENT_BYTES, VoprfError, deserialize_element

__all__ = [
    "FORMAT_LINE",
    "MAX_MEMBERS",
    "MAX_TOKEN_KEYS",
    "MAX_VERSION",
    "REGISTRY_SPIFFE_PREFIX",
    "ROLES",
    "LogInfo",
    "Manifest",
    "Member",
    "MemberRole",
    "TokenPublicKey",
    "TokenService",
    "canonical_json",
    "federation_key_name",
    "member_log_origin",
    "witness_key_name",
]

FORMAT_LINE = "numbind/federation-manifest/v1"
REGISTRY_SPIFFE_PREFIX = "spiffe://numbind/registry/"
MAX_MEMBERS = 1000
MAX_TOKEN_KEYS = 64
# JSON numbers above 2^53 lose precision in most other languages' parsers.
MAX_VERSION = 2**53 - 1

MemberRole = Literal["lifecycle-authority", "token-service", "binding-registry"]
ROLES: tuple[MemberRole, ...] = get_args(MemberRole)

_KEY_ID_RE = re.compile(r"[0-9a-f]{1,64}")


def federation_key_name(federation: str) -> str:
    """The note key name of a federation's key: `numbind.<federation id>/federation`."""
    return f"numbind.{check_federation_id('federation', federation)}/federation"


def witness_key_name(federation: str, member_id: str) -> str:
    """The name a member cosigns checkpoints under: `numbind.<federation>/witness/<member>`."""
    return f"numbind.{federation}/witness/{member_id}"


def member_log_origin(federation: str, member_id: str) -> str:
    """A member's own log (the orders it makes for its platforms):
    `numbind.<federation>/log/<member>`, so no two logs of a federation share an origin."""
    return f"numbind.{federation}/log/{member_id}"


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only: one encoding per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class TokenPublicKey:
    """One public key of the token service (a canonical ristretto255 element)."""

    key_id: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not _KEY_ID_RE.fullmatch(self.key_id):
            raise field_error(
                "token_service.keys", self.key_id, "a key id of 1-64 lowercase hex digits"
            )
        try:
            deserialize_element(self.public_key)
        except VoprfError:
            raise field_error(
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
            raise field_error("token_service.keys", f"{len(self.keys)} keys", f"1-{MAX_TOKEN_KEYS}")
        ids = [k.key_id for k in self.keys]
        if ids != sorted(set(ids)):
            raise field_error("token_service.keys", ids, "distinct key ids in ascending order")
        if self.active_key_id not in ids:
            raise field_error("token_service.active_key_id", self.active_key_id, f"one of {ids}")

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
    # The member's witness (cosignature/v1, type 0x04) verifier key, named
    # witness_key_name(federation, id); None for a member that declared none (it joined
    # before manifests carried witness keys, or it is the hub, which witnesses no one).
    witness_key: str | None = None
    # The member's own log key (Ed25519 note key named member_log_origin(federation, id)):
    # the log of the orders it makes for its platforms. None for the hub (its log is
    # `Manifest.log`) and for a member that joined before manifests named member logs.
    log_key: str | None = None
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
            raise field_error(
                f"{where}.roles", list(self.roles), f"distinct, sorted roles from {ROLES}"
            )
        if self.witness_key is not None:
            self.witness  # noqa: B018 - parses (and so checks) the key
        if self.log_key is not None:
            self.log  # noqa: B018 - parses (and so checks) the key

    @property
    def witness(self) -> CosignatureVerifier | None:
        """The member's witness key, parsed; None when it declared none."""
        if self.witness_key is None:
            return None
        try:
            return CosignatureVerifier.parse(self.witness_key)
        except LogError as exc:
            where = f"members[{self.id!r}].witness_key"
            raise field_error(
                where, self.witness_key, f"a cosignature key ({exc.message})"
            ) from None

    @property
    def log(self) -> LogInfo | None:
        """The member's own log (origin is the key's name), parsed; None when not named."""
        if self.log_key is None:
            return None
        try:
            name = note.Ed25519Verifier.parse(self.log_key).name
        except LogError as exc:
            where = f"members[{self.id!r}].log_key"
            raise field_error(where, self.log_key, f"an Ed25519 note key ({exc.message})") from None
        return LogInfo(name, self.log_key)

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
class LogInfo:
    """The lifecycle authority's verifiable log: the origin its checkpoints name and the
    Ed25519 note key that signs them (its name is the origin). Clients and witnesses pin
    the log key from here rather than trusting what the log names on first use."""

    origin: str
    key: str

    def __post_init__(self) -> None:
        verifier = self.verifier
        if verifier.name != self.origin:
            raise field_error("log.key", verifier.name, f"a key named {self.origin!r} (the origin)")

    @property
    def verifier(self) -> note.Ed25519Verifier:
        try:
            return note.Ed25519Verifier.parse(self.key)
        except LogError as exc:
            raise field_error("log.key", self.key, f"an Ed25519 note key ({exc.message})") from None


@dataclass(frozen=True)
class Manifest:
    """A federation manifest body; the constructor refuses whatever the rules forbid."""

    federation: str
    version: int
    issued_at: int
    token_service: TokenService
    members: tuple[Member, ...]
    # The hub's log (None in a manifest from before logs were named here: witnesses and
    # clients then pin the log key on first use).
    log: LogInfo | None = None

    def __post_init__(self) -> None:
        check_federation_id("federation", self.federation)
        _check_int("version", self.version, 1, MAX_VERSION)
        _check_int("issued_at", self.issued_at, 0, 2**63 - 1)
        if not 1 <= len(self.members) <= MAX_MEMBERS:
            raise field_error("members", f"{len(self.members)} members", f"1-{MAX_MEMBERS}")
        ids = [m.id for m in self.members]
        if ids != sorted(set(ids)):
            raise field_error("members", ids, "distinct member ids in ascending order")
        _unique("address", [(m.id, m.address) for m in self.members])
        # One CA per member: a CA shared by two members would let either mint the other's
        # registry identity.
        _unique("ca_pem (CA key)", [(m.id, m.ca_spki.hex()) for m in self.members])
        authorities = [m.id for m in self.members if "lifecycle-authority" in m.roles]
        if len(authorities) != 1:
            raise field_error("members.roles", authorities, "exactly one lifecycle-authority")
        token_services = [m for m in self.members if "token-service" in m.roles]
        if len(token_services) > 1:
            raise field_error("members.roles", [m.id for m in token_services], "one token-service")
        if token_services and token_services[0].address != self.token_service.address:
            raise field_error(
                "token_service.address",
                self.token_service.address,
                f"{token_services[0].address}, the address of token-service member "
                f"{token_services[0].id}",
            )
        for m in self.members:
            w = m.witness
            want = witness_key_name(self.federation, m.id)
            if w is not None and w.name != want:
                raise field_error(f"members[{m.id!r}].witness_key", w.name, f"a key named {want}")
            log = m.log
            want = member_log_origin(self.federation, m.id)
            if log is not None and log.origin != want:
                raise field_error(f"members[{m.id!r}].log_key", log.origin, f"a key named {want}")
        _unique(
            "witness key",
            [(m.id, m.witness.public_key.hex()) for m in self.members if m.witness is not None],
        )
        _unique(
            "log key",
            [(m.id, m.log_key) for m in self.members if m.log_key is not None]
            + ([(self.authority.id, self.log.key)] if self.log is not None else []),
        )

    def witness_policy(self, owner: str | None = None) -> WitnessPolicy:
        """The default trust in the log of registry `owner` (default: the hub's log): every
        OTHER registry that declared a witness key must have cosigned (no registry witnesses
        its own log). A federation of one, or a manifest naming no witness keys, needs the
        log key alone."""
        owner = self.authority.id if owner is None else owner
        return WitnessPolicy.all_of(
            w for m in self.members if m.id != owner and (w := m.witness) is not None
        )

    def log_of(self, member_id: str) -> LogInfo | None:
        """The log of registry `member_id` as this manifest names it: the hub's is `log`, a
        member's is its `log_key`; None when it names none."""
        if member_id == self.authority.id:
            return self.log
        member = self.member(member_id)
        return member.log if member is not None else None

    def logs(self) -> list[tuple[Member, LogInfo]]:
        """Every registry's log this manifest names, with its owner."""
        return [(m, log) for m in self.members if (log := self.log_of(m.id)) is not None]

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
        return f"{FORMAT_LINE}\n{canonical_json(self._to_json())}\n".encode("ascii")

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
            "members": [_member_json(m) for m in self.members],
        } | ({"log": {"origin": self.log.origin, "key": self.log.key}} if self.log else {})


def _member_json(m: Member) -> dict[str, Any]:
    # Optional fields appear only when set: a manifest without them encodes exactly as it
    # did before they existed (members running older code read it unchanged).
    out: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "address": m.address,
        "ca_pem": m.ca_pem,
        "roles": list(m.roles),
    }
    if m.witness_key is not None:
        out["witness_key"] = m.witness_key
    if m.log_key is not None:
        out["log_key"] = m.log_key
    return out


def _check_int(where: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(where, value, f"an integer in {low}..{high}")


def _unique(what: str, pairs: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for member_id, value in pairs:
        if value in seen:
            raise MalformedManifest(
                f"members: {seen[value]} and {member_id} share one {what}, want one each"
            )
        seen[value] = member_id
