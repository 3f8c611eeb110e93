"""The registry CA (registry.pki): principal ids, the CA itself, the server and client
certificates it issues, principals read back from certificates, and CSR signing."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from numbind.protocol.bundle import make_client_key_and_csr
from numbind.registry.pki import (
    CertificateAuthority,
    PrincipalId,
    principal_from_cert_der,
    principal_from_cert_pem,
)


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
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
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
