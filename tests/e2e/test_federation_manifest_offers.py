"""Manifests a member receives over replication obey the acceptance rule: installed only
if signed by the pinned federation key, newer than the one held, and still naming this
member under its CA; anything else leaves the held manifest exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.protocol.manifest import FederationError
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.member import install_offered

from tests.e2e._federation import Dirs, fed, join


def _manifest(data_dir: Path) -> bytes:
    return FederationDir(data_dir).manifest_path.read_bytes()


def test_offered_manifests_bad_signature_older_or_foreign_are_refused(tmp_path: Path) -> None:
    dirs = Dirs.create(tmp_path)
    join(dirs, members=("bank", "net"))  # hub v3; bank holds v2, net v3
    bank = FederationDir(dirs.bank)
    v2, v3 = _manifest(dirs.bank), _manifest(dirs.hub)
    assert bank.require().manifest.version == 2

    # Tampered v3 (one byte of the signed body changed): refused, v2 stays.
    tampered = v3.replace(b'"version":3', b'"version":9')
    with pytest.raises(FederationError, match="does not verify"):
        install_offered(bank, tampered)
    assert _manifest(dirs.bank) == v2

    # Another federation's manifest, under another key: refused, v2 stays.
    other = Dirs.create(tmp_path / "other")
    fed("init", other.hub, "--id", "demo", "--address", "127.0.0.1:1")
    with pytest.raises(FederationError):
        install_offered(bank, _manifest(other.hub))
    assert _manifest(dirs.bank) == v2

    # The genuine v3 is installed; then v2 again (older) changes nothing.
    assert install_offered(bank, v3) is True
    assert _manifest(dirs.bank) == v3
    assert install_offered(bank, v2) is False
    assert install_offered(bank, v3) is False
    assert _manifest(dirs.bank) == v3

    # A newer version that no longer names bank is refused: bank keeps v3.
    fed("remove-member", dirs.hub, "bank")
    v4 = _manifest(dirs.hub)
    with pytest.raises(FederationError, match="no longer names member bank"):
        install_offered(bank, v4)
    assert _manifest(dirs.bank) == v3
