"""numbind.registry.federation.join: the request and grant files, checked for shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from numbind.protocol.manifest import MalformedJoinFile
from numbind.registry.federation.join import (
    GRANT_FORMAT,
    MAX_FILE_BYTES,
    REQUEST_FORMAT,
    Grant,
    JoinRequest,
)
from numbind.registry.pki import CertificateAuthority


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca")).cert_pem.decode()


def _expired_ca() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now - timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_request_round_trip(tmp_path: Path, ca_pem: str) -> None:
    req = JoinRequest("bank", "示例金融平台登记", "127.0.0.1:7444", ca_pem)
    path = tmp_path / "r.json"
    path.write_bytes(req.to_bytes())
    assert JoinRequest.read(path) == req
    raw = json.loads(path.read_text())
    assert raw["format"] == REQUEST_FORMAT and raw["name"] == "示例金融平台登记"


@pytest.mark.parametrize(
    ("change", "want"),
    [
        ({"format": "numbind/federation-grant/v1"}, "format: got"),
        ({"extra": 1}, "fields: got"),
        ({"id": "Bank"}, "id: got 'Bank'"),
        ({"id": 5}, "id: want a string"),
        ({"address": "bank"}, "address: got 'bank'"),
        ({"name": ""}, "name: got ''"),
        ({"ca_pem": "not a cert"}, "ca_pem: not a PEM certificate"),
        ({"ca_pem": "<EXPIRED>"}, "not now"),
    ],
)
def test_request_shape_is_checked(
    tmp_path: Path, ca_pem: str, change: dict[str, object], want: str
) -> None:
    raw = json.loads(JoinRequest("bank", "bank", "127.0.0.1:7444", ca_pem).to_bytes())
    raw.update({k: _expired_ca() if v == "<EXPIRED>" else v for k, v in change.items()})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MalformedJoinFile) as info:
        JoinRequest.read(path)
    assert info.value.message.startswith(f"join request {path}: ")
    assert want in info.value.message


@pytest.mark.parametrize(
    ("content", "want"),
    [(b"[]", "want a JSON object"), (b"{", "not JSON"), (b" " * (MAX_FILE_BYTES + 1), "larger")],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, want: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(MalformedJoinFile, match=want):
        JoinRequest.read(path)
    with pytest.raises(MalformedJoinFile, match="cannot read it"):
        Grant.read(tmp_path / "missing.json")


def test_grant_round_trip_keeps_the_exact_manifest_bytes(tmp_path: Path, ca_pem: str) -> None:
    manifest = "numbind/federation-manifest/v1\n{}\n\n— numbind.demo/federation AAAA\n".encode()
    grant = Grant("bank", "numbind.demo/federation+00+AA==", "hub", "h:1", ca_pem, manifest)
    path = tmp_path / "g.json"
    path.write_bytes(grant.to_bytes())
    assert Grant.read(path) == grant
    assert Grant.read(path).manifest == manifest
    raw = json.loads(path.read_text())
    assert raw["format"] == GRANT_FORMAT and set(raw["hub"]) == {"id", "address", "ca_pem"}


@pytest.mark.parametrize(
    ("change", "want"),
    [
        ({"hub": "h:1"}, "hub: want an object"),
        ({"manifest": 3}, "manifest: want a string"),
        ({"member": "Bad"}, "member: got 'Bad'"),
        ({"format": REQUEST_FORMAT}, "format: got"),
    ],
)
def test_grant_shape_is_checked(
    tmp_path: Path, ca_pem: str, change: dict[str, object], want: str
) -> None:
    grant = Grant("bank", "k", "hub", "h:1", ca_pem, b"m")
    raw = json.loads(grant.to_bytes())
    raw.update(change)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MalformedJoinFile, match=want):
        Grant.read(path)


def test_the_federation_lock_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """serve refuses a data dir holding a file others can read; the lock a federation
    command leaves behind must not be one, even under a permissive umask."""
    import os
    import stat

    from numbind.registry.datadir import exposed
    from numbind.registry.federation.files import FederationDir

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    old = os.umask(0o022)
    try:
        with FederationDir(data).locked():
            pass
    finally:
        os.umask(old)
    lock = FederationDir(data).root / ".lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert exposed(data) == []
