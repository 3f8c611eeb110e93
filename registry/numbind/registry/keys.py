"""The token service's VOPRF keys: public halves in the database, secrets in the data dir.

Each secret is one file `keys/<key_id>.key` (hex scalar, mode 0600) and never enters the
database or a log, so an operator can run the token service, and its keys, apart from the
binding store. Exactly one key is ACTIVE; rotation demotes it to EVALUATE_ONLY, and retiring
stops evaluation under it.

This is the only module that reads a key file. What the store gets from a rotation is the
`Rotation.delta` (k_new / k_old), never a key: the store side (storage, the request
services, the re-key) may not import this module, which `make lint` checks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from numbind.protocol import rekey as rekey_algebra
from numbind.protocol import voprf
from numbind.protocol.files import write_private_file
from numbind.registry.domain.types import KeyState, now_us
from numbind.registry.errors import FailedPrecondition, NotFound
from numbind.registry.storage import token_keys
from numbind.registry.storage.db import Database, Session

log = logging.getLogger(__name__)


def key_id_for(public_key: bytes) -> str:
    """Short, stable name of a key: the first 8 bytes of SHA-256 of pkS, in hex."""
    return hashlib.sha256(b"numbind-key-id\x00" + public_key).hexdigest()[:16]


@dataclass(frozen=True)
class TokenKey:
    key_id: str
    public_key: bytes
    state: KeyState
    created_us: int
    secret: bytes | None = None  # loaded for keys that still evaluate


@dataclass(frozen=True)
class Rotation:
    """A new active key, and the delta from the key it replaced (None on a fresh store)."""

    key: TokenKey
    previous_key_id: str | None
    delta: bytes | None


class KeyRing:
    """Keys as this process knows them; reload() re-reads after an admin change."""

    def __init__(self, db: Database, keys_dir: Path, *, secrets: bool = True) -> None:
        self._db = db
        self._dir = keys_dir
        # False on a federation member: the token service (and every secret) is the
        # hub's; this ring only knows the public halves it announced.
        self._secrets = secrets
        self._lock = threading.Lock()
        self._keys: dict[str, TokenKey] = {}
        self._loaded = 0.0

    # -- reading -----------------------------------------------------------------------
    def older_than(self, seconds: float) -> bool:
        """Whether the last load is older than `seconds` (another registry process sharing
        the store may have rotated or retired a key since)."""
        return time.monotonic() - self._loaded >= seconds

    def expire(self) -> None:
        """Another process changed the keys (its notification arrived): the next
        `older_than` check answers True, whatever its age."""
        self._loaded = float("-inf")

    def reload(self) -> None:
        self._loaded = time.monotonic()
        records = self._db.transact(token_keys.all_keys, write=False)
        keys: dict[str, TokenKey] = {}
        for r in records:
            secret = (
                self._read_secret(r.key_id)
                if r.state != KeyState.RETIRED and self._secrets
                else None
            )
            keys[r.key_id] = TokenKey(r.key_id, r.public_key, r.state, r.created_us, secret)
        with self._lock:
            self._keys = keys

    def _path(self, key_id: str) -> Path:
        return self._dir / f"{key_id}.key"

    def _read_secret(self, key_id: str) -> bytes:
        path = self._path(key_id)
        try:
            secret = bytes.fromhex(path.read_text().strip())
            matches = key_id_for(voprf.public_key(secret)) == key_id
        except FileNotFoundError:
            raise FailedPrecondition(f"key {key_id}: secret file {path} is missing") from None
        except (ValueError, voprf.VoprfError):
            matches = False
        if not matches:
            raise FailedPrecondition(f"key {key_id}: secret file {path} does not match")
        return secret

    def all(self) -> list[TokenKey]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: k.created_us)

    def live(self) -> list[TokenKey]:
        return [k for k in self.all() if k.state != KeyState.RETIRED]

    def active(self) -> TokenKey:
        for key in self.all():
            if key.state == KeyState.ACTIVE:
                return key
        raise FailedPrecondition("token service has no active key; run `numbind admin init`")

    def for_evaluation(self, key_id: str) -> TokenKey:
        """The key to evaluate under: the active one for "", else a live key by id."""
        if not key_id:
            return self.active()
        with self._lock:
            key = self._keys.get(key_id)
        if key is None:
            raise NotFound(f"key_id: got {key_id!r}, want one of the keys from GetKeys")
        if key.state == KeyState.RETIRED or key.secret is None:
            raise FailedPrecondition(f"key_id: {key_id} is retired and no longer evaluates")
        return key

    def export(self, key_id: str) -> bytes:
        key = self.for_evaluation(key_id)
        assert key.secret is not None
        log.warning("token key %s exported for escrow", key_id)
        return key.secret

    def delta(self, old_key_id: str, new_key_id: str) -> bytes:
        """k_new / k_old for two live keys: what the store needs to map old tokens."""
        return rekey_algebra.rekey_delta(
            self._read_secret(old_key_id), self._read_secret(new_key_id)
        )

    # -- changing ----------------------------------------------------------------------
    def create_active(self, session: Session) -> Rotation:
        """A new ACTIVE key; the previous active key (if any) becomes EVALUATE_ONLY.

        The secret file is written before the row commits: a crash leaves an orphan file,
        never a key row without its secret.
        """
        if not self._secrets:
            raise FailedPrecondition(
                "this registry is a federation member: token keys are rotated at the "
                "federation's token service, and reach this store through replication"
            )
        secret, public = voprf.generate_key_pair()
        key_id = key_id_for(public)
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self._path(key_id), secret.hex().encode() + b"\n")
        now = now_us()
        previous = token_keys.activate(session, key_id, public, now)
        # The previous secret is read from its file, not this process's cache: another
        # process may have rotated since this one last reloaded.
        delta = (
            rekey_algebra.rekey_delta(self._read_secret(previous), secret)
            if previous is not None
            else None
        )
        return Rotation(TokenKey(key_id, public, KeyState.ACTIVE, now, secret), previous, delta)

    @staticmethod
    def retire(session: Session, key_id: str) -> bool:
        """EVALUATE_ONLY -> RETIRED (True), or already retired (False)."""
        return token_keys.retire(session, key_id, now_us())

    def ensure_active(self) -> None:
        """Create the first key on a fresh store; otherwise just load."""
        if self._secrets and not self._db.transact(token_keys.any_key, write=False):
            self._db.transact(self.create_active)
        self.reload()
