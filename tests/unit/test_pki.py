"""The registry CA (registry.pki) and the client credential bundle (numbind.protocol.bundle)."""

from __future__ import annotations

import ipaddress
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from numbind.protocol.bundle import Bundle, BundleError, make_client_key_and_csr
from numbind.protocol.files import write_private_file
from numbind.registry.pki import (
    CertificateAuthority,
    PrincipalId,
    principal_from_cert_der,
    principal_from_cert_pem,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def _client_cert(ca: CertificateAuthority, principal: PrincipalId) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.load_pem_x509_certificate(ca.issue_client_cert(principal, key.public_key()))


def _self_signed_with_sans(sans: list[x509.GeneralName]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2034, 1, 1, tzinfo=UTC))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


# --- PrincipalId -------------------------------------------------------------------------------


def test_principal_uri_round_trip() -> None:
    p = PrincipalId("platform", "acme")
    assert p.uri == "spiffe://numbind/platform/acme"
    assert PrincipalId.from_uri(p.uri) == p
    for role in ("platform", "carrier", "admin"):
        q = PrincipalId(role, "a.b-c_9")
        assert PrincipalId.from_uri(q.uri) == q
    assert PrincipalId("carrier", "x" * 63).id == "x" * 63


@pytest.mark.parametrize(
    "ident",
    ["", "Acme", "-acme", ".acme", "_acme", "ac me", "acme/x", "x" * 64, "acmé", "acme\n"],
)
def test_principal_id_rejects_bad_ids(ident: str) -> None:
    with pytest.raises(ValueError, match="invalid principal id"):
        PrincipalId("platform", ident)


def test_principal_id_rejects_bad_role() -> None:
    with pytest.raises(ValueError, match="unknown principal role"):
        PrincipalId("holder", "acme")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "spiffe://numbind/platform",
        "spiffe://numbind/platform/",
        "spiffe://numbind/platform/acme/extra",
        "spiffe://numbind/holder/acme",
        "spiffe://other/platform/acme",
        "https://numbind/platform/acme",
        "SPIFFE://numbind/platform/acme",
        "spiffe://numbind/platform/ACME",
        "spiffe://numbind//acme",
        "spiffe://numbind/platform/acme?x=1",
    ],
)
def test_principal_from_uri_rejects_malformed(uri: str) -> None:
    with pytest.raises(ValueError, match="principal URI"):
        PrincipalId.from_uri(uri)


# --- CA ----------------------------------------------------------------------------------------


def test_ca_create_load_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca = CertificateAuthority.create(directory, common_name="test CA")
    assert (directory / "ca.pem").read_bytes() == ca.cert_pem
    assert _mode(directory / "ca.key") == 0o600
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp files left

    loaded = CertificateAuthority.load(directory)
    assert loaded.cert_pem == ca.cert_pem

    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test CA"
    assert cert.subject == cert.issuer
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.value.key_cert_sign and ku.value.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 3650 <= lifetime.days <= 3653

    # A certificate issued by the reloaded CA verifies against the original's cert.
    server_pem, _ = loaded.issue_server_cert()
    verifier = PolicyBuilder().store(Store([cert])).build_server_verifier(DNSName("localhost"))
    verifier.verify(x509.load_pem_x509_certificate(server_pem), [])


def test_ca_create_refuses_to_overwrite(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path)
    with pytest.raises(FileExistsError):
        CertificateAuthority.create(tmp_path)


def test_ca_load_rejects_mismatched_key(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    CertificateAuthority.create(a)
    CertificateAuthority.create(b)
    (a / "ca.key").write_bytes((b / "ca.key").read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority.load(a)


def test_ca_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CertificateAuthority.load(tmp_path)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_server_cert_verifies_for_each_default_host(ca: CertificateAuthority, host: str) -> None:
    cert_pem, key_pem = ca.issue_server_cert()
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == cert.public_key()

    try:
        subject: DNSName | IPAddress = IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = DNSName(host)
    store = Store([ca.certificate])
    chain = PolicyBuilder().store(store).build_server_verifier(subject).verify(cert, [])
    assert chain[0] == cert and chain[-1] == ca.certificate

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert 729 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 731


def test_server_cert_does_not_verify_for_other_hosts(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.issue_server_cert(["registry.example"])[0])
    store = Store([ca.certificate])
    PolicyBuilder().store(store).build_server_verifier(DNSName("registry.example")).verify(cert, [])
    for subject in (DNSName("localhost"), IPAddress(ipaddress.ip_address("127.0.0.1"))):
        with pytest.raises(VerificationError):
            PolicyBuilder().store(store).build_server_verifier(subject).verify(cert, [])


def test_server_cert_san_kinds(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(
        ca.issue_server_cert(["10.0.0.1", "Registry.Example", "fe80::1", "10.0.0.1"])[0]
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["registry.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_address("fe80::1"),
    ]


@pytest.mark.parametrize("hosts", [[], ["bad host"], ["[::1]"], ["a..b"]])
def test_server_cert_rejects_bad_hosts(ca: CertificateAuthority, hosts: list[str]) -> None:
    with pytest.raises(ValueError):
        ca.issue_server_cert(hosts)


def test_client_cert_carries_only_the_principal(ca: CertificateAuthority) -> None:
    principal = PrincipalId("carrier", "telco-1")
    cert = _client_cert(ca, principal)

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier("spiffe://numbind/carrier/telco-1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "telco-1"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 364 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366

    verified = (
        PolicyBuilder().store(Store([ca.certificate])).build_client_verifier().verify(cert, [])
    )
    assert verified.chain[-1] == ca.certificate
    assert principal_from_cert_der(cert.public_bytes(serialization.Encoding.DER)) == principal


def test_client_cert_rejects_unsuitable_keys(ca: CertificateAuthority) -> None:
    principal = PrincipalId("platform", "acme")
    with pytest.raises(ValueError, match="unsupported"):
        ca.issue_client_cert(principal, ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="curve"):
        ca.issue_client_cert(principal, ec.generate_private_key(ec.SECP256K1()).public_key())


def test_principal_from_cert_round_trip(ca: CertificateAuthority) -> None:
    for principal in (
        PrincipalId("platform", "acme"),
        PrincipalId("carrier", "c1"),
        PrincipalId("admin", "ops"),
    ):
        cert = _client_cert(ca, principal)
        assert principal_from_cert_der(cert.public_bytes(serialization.Encoding.DER)) == principal
        assert principal_from_cert_pem(cert.public_bytes(serialization.Encoding.PEM)) == principal


@pytest.mark.parametrize(
    ("sans", "message"),
    [
        ([], "no subjectAltName"),
        ([x509.DNSName("acme.example")], "no spiffe"),
        ([x509.UniformResourceIdentifier("https://acme.example/")], "no spiffe"),
        (
            [
                x509.UniformResourceIdentifier("spiffe://numbind/platform/a"),
                x509.UniformResourceIdentifier("spiffe://numbind/platform/b"),
            ],
            "2 spiffe URIs",
        ),
        (
            [
                x509.UniformResourceIdentifier("spiffe://numbind/platform/a"),
                x509.UniformResourceIdentifier("spiffe://elsewhere/platform/a"),
            ],
            "2 spiffe URIs",
        ),
        ([x509.UniformResourceIdentifier("spiffe://elsewhere/platform/a")], "does not start"),
        ([x509.UniformResourceIdentifier("spiffe://numbind/holder/a")], "unknown role"),
    ],
)
def test_principal_from_cert_failures(sans: list[x509.GeneralName], message: str) -> None:
    cert = _self_signed_with_sans(sans)
    with pytest.raises(ValueError, match=message):
        principal_from_cert_der(cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(ValueError, match=message):
        principal_from_cert_pem(cert.public_bytes(serialization.Encoding.PEM))


def test_principal_from_cert_garbage() -> None:
    with pytest.raises(ValueError, match="not a DER certificate"):
        principal_from_cert_der(b"\x30\x03garbage")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        principal_from_cert_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# --- CSR ---------------------------------------------------------------------------------------


def test_sign_csr_issues_for_the_csr_key(ca: CertificateAuthority) -> None:
    key_pem, csr_pem = make_client_key_and_csr("acme")
    principal = PrincipalId("platform", "acme")
    cert = x509.load_pem_x509_certificate(ca.sign_csr(csr_pem, principal))
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert cert.public_key() == key.public_key()
    assert principal_from_cert_pem(cert.public_bytes(serialization.Encoding.PEM)) == principal


def test_sign_csr_ignores_requested_identity(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier("spiffe://numbind/admin/root"),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    principal = PrincipalId("platform", "acme")
    cert = x509.load_pem_x509_certificate(
        ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), principal)
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(principal.uri)]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_sign_csr_rejects_tampered_csr(ca: CertificateAuthority) -> None:
    _, csr_pem = make_client_key_and_csr("acme")
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    # Change the subject CN "acme" -> "acmf": still parses, but the signature no longer matches.
    at = der.index(b"acme")
    der[at + 3] = ord("f")
    tampered = x509.load_der_x509_csr(bytes(der))
    assert not tampered.is_signature_valid
    with pytest.raises(ValueError, match="signature is invalid"):
        ca.sign_csr(tampered.public_bytes(serialization.Encoding.PEM), PrincipalId("platform", "a"))


def test_sign_csr_rejects_garbage(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="certificate signing request"):
        ca.sign_csr(b"not a csr", PrincipalId("platform", "acme"))


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
