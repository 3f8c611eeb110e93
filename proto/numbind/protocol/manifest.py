"""The federation manifest: who is in a federation, signed with the federation's Ed25519 key.

A manifest names the federation, its version (a strictly increasing integer), when it was
issued, the token service (its address and the public keys tokens are made under, by key
id) and every member registry: id, display name, address, CA certificate and roles. The
lifecycle authority (the hub) is the one member with the ``lifecycle-authority`` role.

The verifiable log's trust rides on it too (both optional, so older manifests still open):
``log`` names the hub's log (its checkpoint origin and Ed25519 note key) and each member
may carry a ``witness_key`` (its tlog-cosignature key, named
``numbind.<federation>/witness/<id>``). `Manifest.witness_policy()` is the clients' default:
every member that declared a witness key cosigned. A registry with no federation is a
federation of one: its policy is the log key alone, no cosignatures.

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

The content and its rules live in `manifest_model` and `manifest_rules`, the error tree in
`federation_errors`; this module re-exports them, so `numbind.protocol.manifest` is the one
name to import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from numbind.protocol import note
from numbind.protocol.federation_errors import (
    FederationError,
    FederationSetupError,
    ForkedManifest,
    MalformedJoinFile,
    MalformedManifest,
    ManifestSignatureError,
    PeerRefused,
    StaleManifest,
    WrongFederation,
)
from numbind.protocol.log_errors import BadSignature, NoKnownSignature, NoteError
from numbind.protocol.manifest_model import (
    FORMAT_LINE,
    MAX_MEMBERS,
    REGISTRY_SPIFFE_PREFIX,
    ROLES,
    LogInfo,
    Manifest,
    Member,
    MemberRole,
    TokenPublicKey,
    TokenService,
    canonical_json,
    federation_key_name,
    member_log_origin,
    witness_key_name,
)
from numbind.protocol.manifest_rules import (
    canonical_pem,
    check_address,
    check_ca_pem,
    check_federation_id,
    check_member_id,
    check_name,
    field_error,
)

__all__ = [
    "FORMAT_LINE",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "REGISTRY_SPIFFE_PREFIX",
    "ROLES",
    "FederationError",
    "FederationSetupError",
    "ForkedManifest",
    "LogInfo",
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
    "member_log_origin",
    "open_manifest",
    "parse_federation_key",
    "sign_manifest",
    "witness_key_name",
]

# A manifest is read whole into memory by every member and SDK: bound what that costs.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# federation_key_name's shape, with the id rule of check_federation_id.
_KEY_NAME_RE = re.compile(r"numbind\.[a-z0-9][a-z0-9._-]{0,62}/federation")


# -- parsing a verified body -----------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise field_error("manifest", key, "each JSON key once")
        out[key] = value
    return out


def _no_floats(text: str) -> Any:
    raise field_error("manifest", text, "integers only (no fractions, exponents, NaN or Infinity)")


def _object(
    where: str, value: object, keys: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise field_error(where, type(value).__name__, "a JSON object")
    if not keys <= set(value) <= keys | optional:
        extra = f" (and optionally {sorted(optional)})" if optional else ""
        raise field_error(where, sorted(value), f"exactly the fields {sorted(keys)}{extra}")
    return value


def _string(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise field_error(where, type(value).__name__, "a string")
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
    if canonical_json(raw) != line:
        raise MalformedManifest("manifest: body is not canonical JSON (sorted keys, no spaces)")
    body = _object(
        "manifest",
        raw,
        {"federation", "version", "issued_at", "token_service", "members"},
        frozenset({"log"}),
    )
    ts = _object("token_service", body["token_service"], {"address", "active_key_id", "keys"})
    if not isinstance(ts["keys"], dict):
        raise field_error("token_service.keys", type(ts["keys"]).__name__, "a JSON object")
    token_keys = []
    for key_id, b64 in ts["keys"].items():
        try:
            public = note.b64decode(_string(f"token_service.keys.{key_id}", b64), "public key")
        except ValueError as exc:
            raise MalformedManifest(f"token_service.keys.{key_id}: {exc}") from None
        token_keys.append(TokenPublicKey(key_id, public))
    if not isinstance(body["members"], list):
        raise field_error("members", type(body["members"]).__name__, "a JSON array")
    members = []
    for i, item in enumerate(body["members"]):
        m = _object(
            f"members[{i}]",
            item,
            {"id", "name", "address", "ca_pem", "roles"},
            frozenset({"witness_key", "log_key"}),
        )
        if not isinstance(m["roles"], list):
            raise field_error(f"members[{i}].roles", type(m["roles"]).__name__, "a JSON array")
        members.append(
            Member(
                id=_string(f"members[{i}].id", m["id"]),
                name=_string(f"members[{i}].name", m["name"]),
                address=_string(f"members[{i}].address", m["address"]),
                ca_pem=_string(f"members[{i}].ca_pem", m["ca_pem"]),
                roles=tuple(m["roles"]),
                witness_key=(
                    _string(f"members[{i}].witness_key", m["witness_key"])
                    if "witness_key" in m
                    else None
                ),
                log_key=(
                    _string(f"members[{i}].log_key", m["log_key"]) if "log_key" in m else None
                ),
            )
        )
    log = None
    if "log" in body:
        raw_log = _object("log", body["log"], {"origin", "key"})
        log = LogInfo(_string("log.origin", raw_log["origin"]), _string("log.key", raw_log["key"]))
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
        log=log,
    )


# -- signing, opening, accepting --------------------------------------------------------


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
        raise field_error("manifest", size, f"at most {MAX_MANIFEST_BYTES} bytes")
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
    # Content, not bytes: the same manifest may arrive with more signatures (a key rollover).
    if new.version == old.version and new != old:
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
    if not _KEY_NAME_RE.fullmatch(key.name):
        raise MalformedManifest(
            f"federation key: named {key.name[:80]!r}, want numbind.<federation id>/federation"
        )
    return key
