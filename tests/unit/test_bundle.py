"""The client credential bundle (numbind.protocol.bundle), and the private-file write
(numbind.protocol.files) that keeps its keys readable by their owner only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import nacl.signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from numbind.protocol.bundle import Bundle, BundleError, make_client_key_and_csr
from numbind.protocol.files import write_private_file
from numbind.registry.pki import CertificateAuthority, PrincipalId


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- write_private_file -----------------------------------------------------------------------


def test_write_private_file_mode_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_private_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


# --- Bundle ------------------------------------------------------------------------------------


def _write_bundle(
    ca: CertificateAuthority, directory: Path, role: str = "platform", ident: str = "acme"
) -> Bundle:
    key_pem, csr_pem = make_client_key_and_csr(ident)
    cert_pem = ca.sign_csr(csr_pem, PrincipalId(role, ident))  # type: ignore[arg-type]
    seed = bytes(range(32)) if role == "carrier" else None
    return Bundle.write(
        directory,
        registry="127.0.0.1:7443",
        role=role,  # type: ignore[arg-type]
        principal_id=ident,
        ca_pem=ca.cert_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        attestation_seed=seed,
    )


def test_bundle_round_trip_platform(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "bundle"
    written = _write_bundle(ca, directory)
    loaded = Bundle.load(str(directory))
    assert loaded == written
    assert loaded.registry == "127.0.0.1:7443"
    assert loaded.role == "platform" and loaded.principal_id == "acme"
    assert loaded.principal_uri == "spiffe://numbind/platform/acme"
    assert loaded.ca_pem == ca.cert_pem
    assert loaded.attestation_seed is None
    assert json.loads((directory / "bundle.json").read_text()) == {
        "registry": "127.0.0.1:7443",
        "principal": "spiffe://numbind/platform/acme",
        "role": "platform",
        "id": "acme",
    }
    assert _mode(directory / "client.key") == 0o600
    assert sorted(p.name for p in directory.iterdir()) == [
        "bundle.json",
        "ca.pem",
        "client.key",
        "client.pem",
    ]
    assert "PRIVATE KEY" not in repr(loaded)
    with pytest.raises(BundleError, match="only carrier bundles"):
        loaded.attestation_signing_key()
    loaded.channel_credentials()


def test_bundle_round_trip_carrier(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "bundle"
    _write_bundle(ca, directory, role="carrier", ident="telco")
    loaded = Bundle.load(directory)
    assert loaded.attestation_seed == bytes(range(32))
    assert _mode(directory / "client.key") == 0o600
    assert _mode(directory / "attestation.key") == 0o600
    assert (directory / "attestation.key").read_text() == bytes(range(32)).hex() + "\n"
    signing_key = loaded.attestation_signing_key()
    assert (directory / "attestation.pub").read_text().strip() == (
        signing_key.verify_key.encode().hex()
    )
    signed = signing_key.sign(b"hello")
    nacl.signing.VerifyKey(bytes.fromhex((directory / "attestation.pub").read_text())).verify(
        signed
    )


def test_bundle_rewrite_as_non_carrier_drops_attestation_key(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "bundle"
    _write_bundle(ca, directory, role="carrier", ident="telco")
    bundle = _write_bundle(ca, directory, role="platform", ident="telco")
    assert bundle.attestation_seed is None
    assert not (directory / "attestation.key").exists()
    assert not (directory / "attestation.pub").exists()


@pytest.mark.parametrize(
    "name",
    ["bundle.json", "ca.pem", "client.pem", "client.key", "attestation.key", "attestation.pub"],
)
def test_bundle_missing_file_is_named(ca: CertificateAuthority, tmp_path: Path, name: str) -> None:
    directory = tmp_path / "bundle"
    _write_bundle(ca, directory, role="carrier", ident="telco")
    (directory / name).unlink()
    with pytest.raises(BundleError, match=f"missing {name}"):
        Bundle.load(directory)


def test_bundle_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.load(tmp_path / "nope")


def test_bundle_bad_files_are_named(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "bundle"
    _write_bundle(ca, directory)
    good = {p.name: p.read_bytes() for p in directory.iterdir()}

    def expect(name: str, data: bytes, message: str) -> None:
        (directory / name).write_bytes(data)
        try:
            with pytest.raises(BundleError, match=message):
                Bundle.load(directory)
        finally:
            (directory / name).write_bytes(good[name])

    expect("bundle.json", b"{", "bundle.json is not JSON")
    expect("bundle.json", b"[]", "bundle.json must hold a JSON object")
    meta = json.loads(good["bundle.json"])
    expect("bundle.json", json.dumps({**meta, "role": "holder"}).encode(), "unknown role")
    expect("bundle.json", json.dumps({**meta, "id": "other"}).encode(), "does not match role/id")
    expect("bundle.json", json.dumps({**meta, "registry": "nohost"}).encode(), "host:port")
    expect("bundle.json", json.dumps({"role": "platform"}).encode(), "'registry'")
    expect("ca.pem", b"junk", "ca.pem is not PEM")
    expect("client.pem", b"junk", "client.pem is not a PEM certificate")
    expect("client.key", b"junk", "client.key is not an unencrypted PEM private key")
    other_key, _ = make_client_key_and_csr("x")
    expect("client.key", other_key, "client.key does not match client.pem")
    # A certificate for someone else, with its matching key, is still the wrong bundle.
    other = tmp_path / "other"
    _write_bundle(ca, other, ident="someone-else")
    (directory / "client.key").write_bytes((other / "client.key").read_bytes())
    expect("client.pem", (other / "client.pem").read_bytes(), "not issued to")
    (directory / "client.key").write_bytes(good["client.key"])
    Bundle.load(directory)


def test_bundle_carrier_attestation_checks(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "bundle"
    _write_bundle(ca, directory, role="carrier", ident="telco")
    (directory / "attestation.key").write_text("zz\n")
    with pytest.raises(BundleError, match=r"attestation\.key: not a hex"):
        Bundle.load(directory)
    (directory / "attestation.key").write_text("00" * 31 + "\n")
    with pytest.raises(BundleError, match="32 bytes"):
        Bundle.load(directory)
    (directory / "attestation.key").write_text("01" * 32 + "\n")
    with pytest.raises(BundleError, match=r"attestation\.pub does not match"):
        Bundle.load(directory)


def test_bundle_write_validation(ca: CertificateAuthority, tmp_path: Path) -> None:
    tmp_path = tmp_path / "bundle"
    common = {"ca_pem": ca.cert_pem, "cert_pem": b"", "key_pem": b""}
    with pytest.raises(BundleError, match="needs an attestation_seed"):
        Bundle.write(tmp_path, registry="h:1", role="carrier", principal_id="c", **common)
    with pytest.raises(BundleError, match="only carrier"):
        Bundle.write(
            tmp_path,
            registry="h:1",
            role="platform",
            principal_id="p",
            attestation_seed=bytes(32),
            **common,
        )
    with pytest.raises(BundleError, match="host:port"):
        Bundle.write(tmp_path, registry="h:99999", role="admin", principal_id="a", **common)
    with pytest.raises(BundleError, match="invalid principal id"):
        Bundle.write(tmp_path, registry="h:1", role="admin", principal_id="A", **common)
    assert not tmp_path.exists()  # nothing written for a rejected bundle


def test_make_client_key_and_csr() -> None:
    key_pem, csr_pem = make_client_key_and_csr("acme")
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme"
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == csr.public_key()
