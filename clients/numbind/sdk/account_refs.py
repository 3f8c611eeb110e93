"""``account_ref``: what a platform tells the registry instead of an account id.

Opaque bytes the registry hands back to this platform only, inside its own revocation
events. By default ``account_ref = HMAC-SHA256(secret, "numbind-account-ref-v1\\0" +
account_id)`` (32 bytes), so the registry learns nothing about the account. The secret is
the file ``account-ref.key`` (64 hex characters, mode 0600) in the bundle directory,
created on first use; or pass ``AccountRefs(secret)`` explicitly to keep it elsewhere (a
KMS, a secrets manager). Back it up: with a new secret every ref changes, so the next sync
withdraws every binding and publishes it again under its new ref, and events already
delivered name refs the platform can no longer recompute. To map an event back to an
account, compute ``refs(account_id)`` for candidate accounts or keep the ref beside the
account; the SDK never stores account ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from numbind.protocol.bundle import Bundle, BundleError

__all__ = ["ACCOUNT_REF_KEY_FILE", "AccountRefs"]

ACCOUNT_REF_KEY_FILE = "account-ref.key"
_REF_DOMAIN = b"numbind-account-ref-v1\x00"


class AccountRefs:
    """Derives ``account_ref`` from the platform's own account id with a secret HMAC key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError(f"account-ref secret: got {len(secret)} bytes, want at least 32")
        # Keyed once; each ref copies the keyed state instead of re-deriving the pads.
        self._mac = hmac.new(secret, _REF_DOMAIN, hashlib.sha256)

    def __repr__(self) -> str:
        return "AccountRefs(<secret>)"

    def __call__(self, account_id: str) -> bytes:
        mac = self._mac.copy()
        mac.update(account_id.encode("utf-8"))
        return mac.digest()

    @classmethod
    def from_bundle(cls, bundle: Bundle | Path | str) -> AccountRefs:
        """The secret in ``<bundle dir>/account-ref.key``, created (0600) if absent."""
        directory = bundle.directory if isinstance(bundle, Bundle) else Path(bundle)
        return cls(_load_or_create_secret(directory / ACCOUNT_REF_KEY_FILE))


def _load_or_create_secret(path: Path) -> bytes:
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            # link() never replaces: if two processes race, both end up reading the winner's.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    try:
        text = path.read_text("ascii").strip()
        secret = bytes.fromhex(text)
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{path}: not a hex string") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
    if len(secret) < 32:
        raise BundleError(f"{path}: got {len(secret)} bytes, want at least 32")
    return secret
