"""ManifestChanges: what every live follower of the manifest file (TLS roots, caller
trust, the log's witness keys, the manifest watch) relies on."""

from __future__ import annotations

import os
from pathlib import Path

from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.federation import hub
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.manifest_changes import ManifestChanges


def _touch_later(path: Path) -> None:
    # A rewrite within the filesystem's timestamp granularity must still count as a change.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_new_verified_manifest_is_returned_once_and_a_bad_one_never(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "hub", listen="127.0.0.1:7443")
    operator.init(settings, registry_address="127.0.0.1:7443")
    hub.init(settings, "fed", address="127.0.0.1:7443")
    files = FederationDir(settings.data_dir)
    changes = ManifestChanges(files)
    assert changes.poll() is None  # nothing changed since it was made

    hub.refresh(settings, address="127.0.0.1:7444")
    _touch_later(files.manifest_path)
    got = changes.poll()
    assert got is not None and got.manifest.version == 2
    assert changes.poll() is None  # returned once

    good = files.manifest_path.read_bytes()
    files.manifest_path.write_bytes(good.replace(b"7444", b"7445"))  # signature breaks
    _touch_later(files.manifest_path)
    assert changes.poll() is None  # refused: the caller keeps what it has
    files.manifest_path.write_bytes(good)
    _touch_later(files.manifest_path)
    again = changes.poll()
    assert again is not None and again.signed.data == good
