"""The data dir is private: the directory and every directory in it 0700, every file 0600.

It holds the embedded store (tokens, account_refs, holder subjects), the token keys, the
CA key and the admin's credentials: any local user who can read it can read them all.
Files are created private from the start (`private_umask` around everything that writes
there, and explicit modes where a file is written), and the registry refuses to serve from
a data dir that anyone but its owner can read, naming the file and the chmod that fixes
it rather than quietly changing modes an operator may have set on purpose.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "ADMIN_BUNDLE",
    "INIT_LOCK",
    "ExposedDataDir",
    "exposed",
    "init_lock",
    "private_umask",
    "require_private",
]

PRIVATE_UMASK = 0o077
# The admin's bundle, DATA_DIR/admin-bundle/ (written by `numbind admin init`).
ADMIN_BUNDLE = "admin-bundle"
# At most this many offending paths are named in the refusal.
_SHOWN = 5


class ExposedDataDir(PermissionError):
    """The data dir, or something in it, is readable (or writable) by group or others."""


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created inside are private whatever the caller's umask
    (the process-wide umask: call it where nothing else creates files concurrently)."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def exposed(data_dir: Path) -> list[tuple[Path, int]]:
    """(path, mode) of the data dir and everything in it that group or others may access.
    Symbolic links are not followed (their own mode means nothing)."""
    found: list[tuple[Path, int]] = []
    root = Path(data_dir)
    if not root.exists():
        return found
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            found.append((path, mode))
    return found


def require_private(data_dir: Path) -> None:
    """Raise ExposedDataDir, naming what is exposed and the command that fixes it."""
    found = exposed(data_dir)
    if not found:
        return
    shown = ", ".join(
        f"{p} ({'directory' if p.is_dir() else 'file'}, mode {m:04o})" for p, m in found[:_SHOWN]
    )
    more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    first = found[0][0]
    want = "700" if first.is_dir() else "600"
    raise ExposedDataDir(
        f"refusing to serve: the data dir {data_dir} holds tokens, account_refs, keys and "
        f"credentials, but group or others may read {shown}{more}. Fix it with "
        f"`chmod {want} {first}`"
        + (f", or all at once: `chmod -R go-rwx {data_dir}`" if len(found) > 1 else "")
    )


# Held while `admin init` (or `serve --init`) makes or completes a data dir.
INIT_LOCK = ".init.lock"


@contextmanager
def init_lock(data_dir: Path) -> Iterator[None]:
    """One init at a time per data dir, waiting for the one before. The data dir is shared
    by the processes of a tier, and N `serve --init` started at once each created a CA (the
    admin bundle then signed by the one that lost, every handshake refused), re-issued the
    server certificate from what it had read (names others added lost) and registered the
    admin (all but one dying on it). Under the lock, the one after finds what the one
    before made and keeps it. flock(2): dropped by the kernel however the holder dies."""
    fd = os.open(data_dir / INIT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
