"""The two files operators exchange to join a registry to a federation (never data dirs).

A join request (member -> hub), JSON::

    {"format": "numbind/federation-join-request/v1",
     "id": "<member id>", "name": "<display name>", "address": "host:port",
     "ca_pem": "<the member's CA certificate>",
     "witness_public_key": "<base64 Ed25519 public key>",
     "log_public_key": "<base64 Ed25519 public key>"}

`witness_public_key` (optional; requests from before it existed have none) is the key the
member cosigns the other registries' logs with; the hub names it
`numbind.<federation>/witness/<id>` in the manifest, so clients require that member's
cosignature by default. `log_public_key` (optional likewise) signs the member's own log
(the orders it makes for its platforms); the manifest names it
`numbind.<federation>/log/<id>`, its origin.

It is signed by nothing: the hub operator decides to trust it out of band (compare the CA
fingerprint `request` prints with the member's operator), so it is only checked for shape.
It holds no secret.

A grant (hub -> member), JSON::

    {"format": "numbind/federation-grant/v1",
     "member": "<member id>",
     "federation_key": "<the federation's verifier key, to pin>",
     "hub": {"id": ..., "address": "host:port", "ca_pem": "<the hub's CA certificate>"},
     "manifest": "<the signed manifest note, exactly as signed>"}

What the member needs to reach the hub is its address and CA certificate; both are also in
the signed manifest, and `accept` refuses a grant whose `hub` disagrees with it. The
member's client certificate for peer calls is NOT in the grant: the member issues it under
its own CA when it accepts. That keeps every private key where it was made (a grant holds
no secret and can travel by mail), and it anchors identity in one place: a peer is
`spiffe://numbind/registry/<ID>` only under the CA the manifest names for <ID>, so the
hub's CA cannot mint a member's identity and a member can renew its certificate alone.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from numbind.protocol import note
from numbind.protocol.checkpoint import CosignatureVerifier
from numbind.protocol.manifest import (
    FederationError,
    MalformedJoinFile,
    canonical_pem,
    check_address,
    check_ca_pem,
    check_member_id,
    check_name,
    member_log_origin,
    witness_key_name,
)

__all__ = ["GRANT_FORMAT", "REQUEST_FORMAT", "Grant", "JoinRequest", "read_join_file"]

REQUEST_FORMAT = "numbind/federation-join-request/v1"
GRANT_FORMAT = "numbind/federation-grant/v1"
# A grant holds one manifest (at most 4 MiB) and little else.
MAX_FILE_BYTES = 5 * 1024 * 1024


def read_join_file(path: Path, what: str) -> dict[str, Any]:
    """Read a join file as a JSON object; MalformedJoinFile names the file and the fault."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise MalformedJoinFile(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise MalformedJoinFile(f"{what} {path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise MalformedJoinFile(f"{what} {path}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedJoinFile(f"{what} {path}: want a JSON object")
    return value


def _fields(where: str, value: dict[str, Any], fmt: str, keys: set[str]) -> None:
    if value.get("format") != fmt:
        got = value.get("format")
        raise MalformedJoinFile(f"{where}: format: got {got!r}, want {fmt!r}")
    if set(value) != keys | {"format"}:
        raise MalformedJoinFile(
            f"{where}: fields: got {sorted(value)}, want {sorted(keys | {'format'})}"
        )


def _dump(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def check_ca_current(where: str, ca_pem: str, now: datetime | None = None) -> None:
    """A CA a peer will be checked against must be valid now (a TLS handshake would fail)."""
    cert = check_ca_pem(where, ca_pem)
    now = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise MalformedJoinFile(
            f"{where}: the CA certificate is valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not now"
        )


@dataclass(frozen=True)
class JoinRequest:
    """A registry's request to join: who it is, where it serves, the CA of its identity."""

    id: str
    name: str
    address: str
    ca_pem: str = field(repr=False)
    witness_public_key: bytes | None = None
    # The member's own log key (optional; requests from before it existed have none).
    log_public_key: bytes | None = None

    def __post_init__(self) -> None:
        for what, key in (
            ("witness_public_key", self.witness_public_key),
            ("log_public_key", self.log_public_key),
        ):
            if key is not None and len(key) != 32:
                raise MalformedJoinFile(
                    f"join request: {what}: got {len(key)} bytes, want a 32-byte Ed25519 public key"
                )
        try:
            check_member_id("id", self.id)
            check_name("name", self.name)
            check_address("address", self.address)
            object.__setattr__(self, "ca_pem", canonical_pem(self.ca_pem))
            check_ca_current("ca_pem", self.ca_pem)
        except MalformedJoinFile:
            raise
        except FederationError as exc:
            raise MalformedJoinFile(f"join request: {exc.message}") from None

    def witness_key(self, federation: str) -> str | None:
        """The witness verifier key the manifest names for this member (None: none sent)."""
        if self.witness_public_key is None:
            return None
        name = witness_key_name(federation, self.id)
        return CosignatureVerifier(name, self.witness_public_key).vkey()

    def log_key(self, federation: str) -> str | None:
        """The member's own log key as the manifest names it, its name the member log's
        origin `numbind.<federation>/log/<id>` (None: none sent)."""
        if self.log_public_key is None:
            return None
        name = member_log_origin(federation, self.id)
        return note.Ed25519Verifier(name, self.log_public_key).vkey()

    def to_bytes(self) -> bytes:
        value = {
            "format": REQUEST_FORMAT,
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "ca_pem": self.ca_pem,
        }
        if self.witness_public_key is not None:
            value["witness_public_key"] = base64.b64encode(self.witness_public_key).decode()
        if self.log_public_key is not None:
            value["log_public_key"] = base64.b64encode(self.log_public_key).decode()
        return _dump(value)

    @classmethod
    def read(cls, path: Path) -> JoinRequest:
        value = read_join_file(path, "join request")
        where = f"join request {path}"
        keys = {"id", "name", "address", "ca_pem"}
        optional = {"witness_public_key", "log_public_key"} & set(value)
        _fields(where, value, REQUEST_FORMAT, keys | optional)
        for key in sorted(keys | optional):
            if not isinstance(value[key], str):
                raise MalformedJoinFile(f"{where}: {key}: want a string")
        public: dict[str, bytes] = {}
        for key in sorted(optional):
            try:
                public[key] = note.b64decode(value[key], key)
            except ValueError as exc:
                raise MalformedJoinFile(f"{where}: {exc}") from None
        try:
            return cls(
                value["id"],
                value["name"],
                value["address"],
                value["ca_pem"],
                public.get("witness_public_key"),
                public.get("log_public_key"),
            )
        except MalformedJoinFile as exc:
            detail = exc.message.removeprefix("join request: ")
            raise MalformedJoinFile(f"{where}: {detail}") from None


@dataclass(frozen=True)
class Grant:
    """The hub's answer to a join request; verified only when accepted (`member.accept`)."""

    member: str
    federation_key: str
    hub_id: str
    hub_address: str
    hub_ca_pem: str = field(repr=False)
    manifest: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return _dump(
            {
                "format": GRANT_FORMAT,
                "member": self.member,
                "federation_key": self.federation_key,
                "hub": {
                    "id": self.hub_id,
                    "address": self.hub_address,
                    "ca_pem": self.hub_ca_pem,
                },
                # A note is UTF-8 by definition (its signature lines start with U+2014): as
                # a JSON string it round-trips to the exact signed bytes.
                "manifest": self.manifest.decode("utf-8"),
            }
        )

    @classmethod
    def read(cls, path: Path) -> Grant:
        value = read_join_file(path, "grant")
        where = f"grant {path}"
        _fields(where, value, GRANT_FORMAT, {"member", "federation_key", "hub", "manifest"})
        hub = value["hub"]
        if not isinstance(hub, dict) or set(hub) != {"id", "address", "ca_pem"}:
            raise MalformedJoinFile(f"{where}: hub: want an object with id, address, ca_pem")
        strings = {
            "member": value["member"],
            "federation_key": value["federation_key"],
            "manifest": value["manifest"],
            "hub.id": hub["id"],
            "hub.address": hub["address"],
            "hub.ca_pem": hub["ca_pem"],
        }
        for key, item in strings.items():
            if not isinstance(item, str):
                raise MalformedJoinFile(f"{where}: {key}: want a string")
        try:
            check_member_id("member", value["member"])
        except FederationError as exc:
            raise MalformedJoinFile(f"{where}: {exc.message}") from None
        return cls(
            member=value["member"],
            federation_key=value["federation_key"],
            hub_id=hub["id"],
            hub_address=hub["address"],
            hub_ca_pem=hub["ca_pem"],
            manifest=value["manifest"].encode("utf-8"),
        )
