"""The registry's log key: the Ed25519 note key that signs its checkpoints.

One file, DATA_DIR/log/log.key (the note signer text, mode 0600), created on first start.
Its key name is the log's origin, `numbind.<federation-id>/log`, with federation id
"local" for a registry with no federation installed, else the installed manifest's id (a
member's own log adds `/<member-id>`). A
log's origin never changes: an existing key keeps its name (and a warning says so) even if
a federation is installed later, since a new origin would be a new log, except where the
installed manifest names this registry's log with this very key under the new origin (a
member sends its log's public key in its join request, before it knows its federation;
the federation names it `numbind.<federation>/log/<member-id>`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from numbind.protocol import note
from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.files import write_private_file
from numbind.registry.federation.files import FederationDir, Installed

log = logging.getLogger(__name__)

LOG_DIR = "log"
KEY_FILE = "log.key"
LOCAL_FEDERATION = "local"


def origin_for(data_dir: Path) -> str:
    """The hub's (and a federation of one's) log is `numbind.<federation>/log`; a member
    logs the orders it makes for its own platforms in a log of its own,
    `numbind.<federation>/log/<member-id>`, so no two logs share an origin."""
    return origin_of(FederationDir(data_dir).load())


def origin_of(installed: Installed | None) -> str:
    """`origin_for` with the installed federation (None: none) already read."""
    if installed is None:
        return f"numbind.{LOCAL_FEDERATION}/log"
    origin = f"numbind.{installed.manifest.federation}/log"
    return origin if installed.is_authority else f"{origin}/{installed.member_id}"


class _Unread:
    """`load_or_create` was not handed the installed federation: it reads it itself."""


_UNREAD = _Unread()


def load_or_create(
    data_dir: Path, origin: str | None = None, installed: Installed | _Unread | None = _UNREAD
) -> note.Ed25519Signer:
    """The log key, created for `origin` (default: `origin_for(data_dir)`) if there is none.

    `installed` is the federation the caller already loaded (None: none installed), so
    start-up verifies the manifest once; left out, it is read here, at most once."""
    path = Path(data_dir) / LOG_DIR / KEY_FILE

    def federation() -> Installed | None:
        nonlocal installed
        if isinstance(installed, _Unread):
            installed = FederationDir(data_dir).load()
        return installed

    want = origin or origin_of(federation())
    if path.exists():
        signer = note.Ed25519Signer.parse(path.read_text(encoding="ascii").strip())
        if signer.name != want and _named_by_manifest(federation(), signer, want):
            return signer.renamed(want)
        if signer.name != want:
            log.warning(
                "log key %s signs for origin %s, not %s: a log keeps its origin",
                path,
                signer.name,
                want,
            )
        return signer
    signer = note.Ed25519Signer.generate(want)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, (signer.skey() + "\n").encode("ascii"))
    log.info("log key created for origin %s", want)
    return signer


def _named_by_manifest(
    installed: Installed | None, signer: note.Ed25519Signer, origin: str
) -> bool:
    """The installed manifest names this registry's log as `origin` with `signer`'s key."""
    if installed is None:
        return False
    named = installed.manifest.log_of(installed.member_id)
    return (
        named is not None
        and named.origin == origin
        and named.verifier.public_key == signer.verifier.public_key
    )


WITNESS_KEY_FILE = "witness.key"


def witness_name(data_dir: Path, installed: Installed | _Unread | None = _UNREAD) -> str:
    """`numbind.<federation-id>/witness/<member-id>` ("local"/"self" outside a federation)."""
    if isinstance(installed, _Unread):
        installed = FederationDir(data_dir).load()
    if installed is None:
        return f"numbind.{LOCAL_FEDERATION}/witness/self"
    return f"numbind.{installed.manifest.federation}/witness/{installed.member_id}"


def load_or_create_witness(
    data_dir: Path, installed: Installed | _Unread | None = _UNREAD
) -> CosignatureSigner:
    """This registry's cosigning key as a witness (DATA_DIR/log/witness.key, 0600), under
    its current witness name: the key is made before the registry knows its federation
    (its public half goes in the join request), and the name follows the federation it
    joined (an Ed25519 cosignature does not commit to the name; the key id does).
    `installed` as for `load_or_create`."""
    path = Path(data_dir) / LOG_DIR / WITNESS_KEY_FILE
    name = witness_name(data_dir, installed)
    if path.exists():
        return CosignatureSigner.parse(path.read_text(encoding="ascii").strip()).renamed(name)
    signer = CosignatureSigner.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, (signer.skey() + "\n").encode("ascii"))
    return signer
