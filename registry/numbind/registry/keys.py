"""The token service's VOPRF keys: public halves in the database, secrets in the data dir.

Each secret is one file `keys/<key_id>.key` (hex scalar, mode 0600) and never enters the
database or a log, so an operator can run the token service, and its keys, apart from the
binding store. Exactly one key is ACTIVE; rotation demotes it to EVALUATE_ONLY, and retiring
stops evaluation under it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from numbind.protocol import voprf
from numbind.protocol.files import write_private_file
from numbind.registry.domain.types import KeyState, now_us
from numbind.registry.errors import FailedPrecondition, NotFound
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import TokenKeyRow
from sqlalchemy import select
from sqlalchemy.orm import Session

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


class KeyRing:
    """Keys as this process knows them; reload() re-reads after an admin change."""

    def __init__(self, db: Database, keys_dir: Path) -> None:
        self._db = db
        self._dir = keys_dir
        self._lock = threading.Lock()
        self._keys: dict[str, TokenKey] = {}

    # -- reading -----------------------------------------------------------------------
    def reload(self) -> None:
        rows = self._db.transact(lambda s: list(s.scalars(select(TokenKeyRow))), write=False)
        keys: dict[str, TokenKey] = {}
        for row in rows:
            state = KeyState(row.state)
            secret = self._read_secret(row.key_id) if state != KeyState.RETIRED else None
            keys[row.key_id] = TokenKey(row.key_id, row.public_key, state, row.created_us, secret)
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

    # -- changing ----------------------------------------------------------------------
    def create_active(self, session: Session) -> TokenKey:
        """A new ACTIVE key; the previous active key (if any) becomes EVALUATE_ONLY.

        The secret file is written before the row commits: a crash leaves an orphan file,
        never a key row without its secret.
        """
        secret, public = voprf.generate_key_pair()
        key_id = key_id_for(public)
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self._path(key_id), secret.hex().encode() + b"\n")
        now = now_us()
        for row in session.scalars(
            select(TokenKeyRow).where(TokenKeyRow.state == int(KeyState.ACTIVE))
        ):
            row.state = int(KeyState.EVALUATE_ONLY)
            row.rotated_us = now
        session.add(
            TokenKeyRow(
                key_id=key_id, public_key=public, state=int(KeyState.ACTIVE), created_us=now
            )
        )
        session.flush()
        return TokenKey(key_id, public, KeyState.ACTIVE, now, secret)

    @staticmethod
    def retire(session: Session, key_id: str) -> None:
        row = session.get(TokenKeyRow, key_id)
        if row is None:
            raise NotFound(f"key_id: no key {key_id!r}")
        if row.state == int(KeyState.ACTIVE):
            raise FailedPrecondition(f"key_id: {key_id} is active; rotate before retiring it")
        if row.state != int(KeyState.RETIRED):
            row.state = int(KeyState.RETIRED)
            row.retired_us = now_us()

    def ensure_active(self) -> None:
        """Create the first key on a fresh store; otherwise just load."""
        has_key = self._db.transact(
            lambda s: s.scalars(select(TokenKeyRow.key_id).limit(1)).first() is not None,
            write=False,
        )
        if not has_key:
            self._db.transact(self.create_active)
        self.reload()
