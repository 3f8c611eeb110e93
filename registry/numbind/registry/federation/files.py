"""A registry's federation files, in DATA_DIR/federation/ (never in the database).

    federation.key    hub only: the federation's Ed25519 signing key (note signer text, 0600)
    federation.vkey   the pinned federation key (note verifier text); later manifests must
                      verify under it
    manifest.note     the installed manifest, the exact signed bytes as signed or received
    self.json         {"member": "<id>"}: which member of the manifest this registry is
    peer/client.pem   this registry's peer certificate, spiffe://numbind/registry/<id>,
                      issued under its own CA (the one the manifest names for it)
    peer/client.key   its private key (0600)

The manifest file is written last: its presence marks an installed federation, and a crash
part-way leaves files the next run of the same command reuses. Every read re-verifies the
manifest under the pinned key, so a file edited by hand is refused, not trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from numbind.protocol import note
from numbind.protocol.files import write_atomically, write_private_file
from numbind.protocol.log_errors import NoteError
from numbind.protocol.manifest import (
    FederationError,
    FederationSetupError,
    Manifest,
    Member,
    SignedManifest,
    check_member_id,
    open_manifest,
    parse_federation_key,
)

__all__ = ["FederationDir", "Installed"]

FEDERATION_DIR = "federation"
KEY_FILE = "federation.key"
PIN_FILE = "federation.vkey"
MANIFEST_FILE = "manifest.note"
SELF_FILE = "self.json"
PEER_DIR = "peer"
PEER_CERT = "client.pem"
PEER_KEY = "client.key"
_LOCK_FILE = ".lock"


@dataclass(frozen=True)
class Installed:
    """The federation a registry holds: pinned key, verified manifest, and who it is."""

    key: note.Ed25519Verifier
    signed: SignedManifest
    member_id: str

    @property
    def manifest(self) -> Manifest:
        return self.signed.manifest

    @property
    def me(self) -> Member | None:
        """This registry's entry, or None once a newer manifest has removed it."""
        return self.manifest.member(self.member_id)

    @property
    def is_authority(self) -> bool:
        return self.manifest.authority.id == self.member_id


class FederationDir:
    """Paths and checked reads/writes of DATA_DIR/federation/."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / FEDERATION_DIR

    @property
    def key_path(self) -> Path:
        return self.root / KEY_FILE

    @property
    def pin_path(self) -> Path:
        return self.root / PIN_FILE

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def self_path(self) -> Path:
        return self.root / SELF_FILE

    @property
    def peer_cert_path(self) -> Path:
        return self.root / PEER_DIR / PEER_CERT

    @property
    def peer_key_path(self) -> Path:
        return self.root / PEER_DIR / PEER_KEY

    def is_installed(self) -> bool:
        return self.manifest_path.exists()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise the commands that change these files (two add-members at once would
        otherwise both sign the same next version)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Opened with an explicit 0600: the data dir's start-up check refuses any file
        # group or others can read, whatever umask the federation command ran under.
        fd = os.open(self.root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- reads ---------------------------------------------------------------------------

    def load(self) -> Installed | None:
        """The installed federation, re-verified; None when there is none (a federation of
        one). Raises FederationError when the files are there but do not check out."""
        if not self.manifest_path.exists():
            return None
        key = self.load_pin()
        if key is None:
            raise FederationSetupError(
                f"{self.manifest_path} is there but {self.pin_path} is not: the federation "
                "files are incomplete; accept the grant again"
            )
        signed = open_manifest(self._read(self.manifest_path), key)
        member_id = self.load_self()
        if member_id is None:
            raise FederationSetupError(f"{self.self_path} is missing; accept the grant again")
        return Installed(key, signed, member_id)

    def require(self) -> Installed:
        installed = self.load()
        if installed is None:
            raise FederationSetupError(
                f"no federation installed in {self.data_dir}; run `numbind federation init` "
                "on the hub or `numbind federation accept` on a member"
            )
        return installed

    def load_pin(self) -> note.Ed25519Verifier | None:
        if not self.pin_path.exists():
            return None
        text = self._read(self.pin_path).decode("ascii", "replace")
        return parse_federation_key(text)

    def load_key(self) -> note.Ed25519Signer | None:
        """The federation's signing key (the hub's), or None on a member."""
        if not self.key_path.exists():
            return None
        text = self._read(self.key_path).decode("ascii", "replace").strip()
        try:
            return note.Ed25519Signer.parse(text)
        except NoteError as exc:
            raise FederationSetupError(f"{self.key_path}: {exc.message}") from None

    def load_self(self) -> str | None:
        if not self.self_path.exists():
            return None
        try:
            value = json.loads(self._read(self.self_path)).get("member")
        except (ValueError, AttributeError):
            value = None
        try:
            return check_member_id(f"{self.self_path}: member", value)
        except FederationError:
            raise FederationSetupError(f"{self.self_path}: want {{'member': '<id>'}}") from None

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise FederationSetupError(f"cannot read {path}: {exc.strerror}") from None

    # -- writes --------------------------------------------------------------------------

    def _mkdir(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def write_key(self, key: note.Ed25519Signer) -> None:
        self._mkdir()
        write_private_file(self.key_path, (key.skey() + "\n").encode("ascii"))

    def write_pin(self, key: note.Ed25519Verifier) -> None:
        self._mkdir()
        write_atomically(self.pin_path, (key.vkey() + "\n").encode("ascii"), 0o600)

    def write_self(self, member_id: str) -> None:
        self._mkdir()
        data = json.dumps({"member": member_id}) + "\n"
        write_atomically(self.self_path, data.encode("ascii"), 0o600)

    def write_manifest(self, signed: SignedManifest) -> None:
        self._mkdir()
        write_atomically(self.manifest_path, signed.data, 0o600)

    def write_peer(self, cert_pem: bytes, key_pem: bytes) -> None:
        (self.root / PEER_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        # Key first: a certificate on disk always has its key beside it.
        write_private_file(self.peer_key_path, key_pem)
        write_atomically(self.peer_cert_path, cert_pem, 0o600)
