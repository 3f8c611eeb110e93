"""Fixtures the unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.registry.pki import CertificateAuthority


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    """A new registry CA: the issuer of the certificates under test (test_pki.py) and of
    the bundles' client certificates (test_bundle.py)."""
    return CertificateAuthority.create(tmp_path / "ca")
