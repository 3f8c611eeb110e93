"""The hosts the registry's TLS server certificate names (registry.server_cert), and
`admin init` keeping it naming every host clients dial: the defaults, --registry's host,
--listen's, every --server-name; re-issued (same key) when one is missing, else untouched."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.verification import PolicyBuilder, Store
from numbind.cli.common import connection_problem
from numbind.cli.serve import _warn_unnamed_listen_host
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.pki import SERVER_CERT_FILE, SERVER_KEY_FILE, CertificateAuthority
from numbind.registry.server_cert import (
    address_hosts,
    ensure_server_cert,
    load_server_pair,
    missing_names,
    server_name,
)

DEFAULTS = ["127.0.0.1", "localhost", "::1"]
# What grpcio 1.85 puts in details() when the chain verifies but names another host.
HOSTNAME_FAILURE = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.2:24001: Custom "
    "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
)


def _sans(cert_path: Path) -> list[str]:
    """The certificate's DNS and IP SANs, as text, in order, read with `cryptography`."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


def _verifies_for(ca: CertificateAuthority, cert_path: Path, host: str) -> None:
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    PolicyBuilder().store(Store([ca.certificate])).build_server_verifier(subject).verify(cert, [])


def test_a_new_certificate_names_what_was_asked(ca: CertificateAuthority, tmp_path: Path) -> None:
    result = ensure_server_cert(ca, tmp_path, [*DEFAULTS, "Registry.Example", "10.0.0.1"])
    assert result.action == "created" and result.added == ()
    assert _sans(tmp_path / SERVER_CERT_FILE) == [*DEFAULTS, "registry.example", "10.0.0.1"]
    assert list(result.names) == _sans(tmp_path / SERVER_CERT_FILE)
    for host in ("registry.example", "10.0.0.1", "::1"):
        _verifies_for(ca, tmp_path / SERVER_CERT_FILE, host)


def test_a_zone_or_a_root_dot_is_named_as_the_certificate_carries_it(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    # A certificate names fe80::1, not fe80::1%eth0, and registry.example without its root
    # dot: kept with them, the name never matched, so every init re-issued the certificate
    # (adding duplicates) and serve warned of a name no init could add.
    asked = [*DEFAULTS, "fe80::1%eth0", "::1%lo", "registry.example."]
    first = ensure_server_cert(ca, tmp_path, asked)
    assert _sans(tmp_path / SERVER_CERT_FILE) == [*DEFAULTS, "fe80::1", "registry.example"]
    assert first.names == (*DEFAULTS, "fe80::1", "registry.example")
    assert ensure_server_cert(ca, tmp_path, asked).action == "kept"
    assert missing_names(tmp_path, ["[fe80::1%eth0]", "registry.example."]) == []
    assert server_name("[::1%lo]") == "::1" and server_name("Registry.Example.") == (
        "registry.example"
    )


def test_a_missing_name_re_issues_it_naming_both(ca: CertificateAuthority, tmp_path: Path) -> None:
    ensure_server_cert(ca, tmp_path, [*DEFAULTS, "registry.example"])
    key_before = (tmp_path / SERVER_KEY_FILE).read_bytes()
    cert_before = (tmp_path / SERVER_CERT_FILE).read_bytes()

    result = ensure_server_cert(ca, tmp_path, ["10.0.0.2", "localhost", "lb.example"])

    assert result.action == "re-issued"
    assert result.added == ("10.0.0.2", "lb.example")
    assert _sans(tmp_path / SERVER_CERT_FILE) == [
        *DEFAULTS,
        "registry.example",
        "10.0.0.2",
        "lb.example",
    ]
    assert (tmp_path / SERVER_CERT_FILE).read_bytes() != cert_before
    # One file replaced: the key stays, so the pair matches at every moment.
    assert (tmp_path / SERVER_KEY_FILE).read_bytes() == key_before
    cert = x509.load_pem_x509_certificate((tmp_path / SERVER_CERT_FILE).read_bytes())
    assert cert.public_key() == x509.load_pem_x509_certificate(cert_before).public_key()
    _verifies_for(ca, tmp_path / SERVER_CERT_FILE, "10.0.0.2")


def test_a_certificate_naming_everything_is_left_alone(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ensure_server_cert(ca, tmp_path, [*DEFAULTS, "registry.example", "10.0.0.1"])
    pair = [tmp_path / SERVER_CERT_FILE, tmp_path / SERVER_KEY_FILE]
    before = [p.read_bytes() for p in pair]

    # Spelled otherwise (case, brackets, IPv6 long form), it is the same names.
    result = ensure_server_cert(ca, tmp_path, ["REGISTRY.example", "[::1]", "0:0:0:0:0:0:0:1"])

    assert result.action == "kept" and result.added == ()
    assert [p.read_bytes() for p in pair] == before


def test_a_re_issue_with_an_unreadable_key_issues_a_new_pair(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ensure_server_cert(ca, tmp_path, DEFAULTS)
    (tmp_path / SERVER_KEY_FILE).write_bytes(b"garbled")
    ensure_server_cert(ca, tmp_path, ["registry.example"])
    cert = x509.load_pem_x509_certificate((tmp_path / SERVER_CERT_FILE).read_bytes())
    key = load_pem_private_key((tmp_path / SERVER_KEY_FILE).read_bytes(), None)
    assert key.public_key() == cert.public_key()


@pytest.mark.parametrize(
    "bad",
    ["bad host", "10.0.0.256", "registry.example:7443", "a..b", "", "under_score.example", "-x"],
)
def test_a_bad_name_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        server_name(bad)
    message = str(info.value)
    assert message.startswith(f"server name {bad!r}: ") and "\n" not in message
    if ":" in bad:
        assert "without :PORT" in message


@pytest.mark.parametrize(
    ("text", "name"),
    [("Registry.Example", "registry.example"), ("[::1]", "::1"), (" 10.0.0.1 ", "10.0.0.1")],
)
def test_a_name_is_normalised_as_the_certificate_carries_it(text: str, name: str) -> None:
    assert server_name(text) == name


def test_hosts_of_an_address_leave_wildcards_out() -> None:
    assert address_hosts("10.0.0.1:7443,10.0.0.2:7443,10.0.0.1:7444") == ["10.0.0.1", "10.0.0.2"]
    assert address_hosts("[fe80::1]:7443") == ["fe80::1"]
    assert address_hosts("0.0.0.0:7443") == [] and address_hosts("[::]:7443") == []


def _settings(tmp_path: Path, listen: str = "127.0.0.1:7443") -> Settings:
    return Settings(data_dir=tmp_path / "data", listen=listen)


def test_init_names_the_registry_host_and_every_server_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    result = operator.init(
        settings, registry_address="registry.example:7443", server_names=["10.0.0.1"]
    )
    assert result.server_cert.action == "created"
    assert _sans(settings.pki_dir / SERVER_CERT_FILE) == [*DEFAULTS, "registry.example", "10.0.0.1"]

    again = operator.init(settings, registry_address="registry.example:7443")
    assert again.server_cert.action == "kept"

    more = operator.init(settings, server_names=["10.0.0.2"])
    assert more.server_cert.action == "re-issued" and more.server_cert.added == ("10.0.0.2",)
    assert _sans(settings.pki_dir / SERVER_CERT_FILE)[-2:] == ["10.0.0.1", "10.0.0.2"]


def test_init_names_the_listen_host_the_admin_bundle_dials(tmp_path: Path) -> None:
    # `serve --init --listen 10.0.0.5:7443` (or NUMBIND_LISTEN): the admin bundle and
    # serving.json send clients to 10.0.0.5, so the certificate must name it.
    settings = _settings(tmp_path, "10.0.0.5:7443")
    operator.init(settings)
    assert "10.0.0.5" in _sans(settings.pki_dir / SERVER_CERT_FILE)
    wildcard = _settings(tmp_path / "any", "0.0.0.0:7443")
    operator.init(wildcard)
    assert _sans(wildcard.pki_dir / SERVER_CERT_FILE) == DEFAULTS


def test_init_refuses_a_bad_name_before_writing_anything(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(ValueError, match="server name 'bad_name'"):
        operator.init(settings, server_names=["bad_name"])
    assert not settings.data_dir.exists()


def test_serve_warns_when_the_certificate_does_not_name_its_listen_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    operator.init(_settings(tmp_path))

    def warned() -> list[str]:
        # serve's records only: an earlier test that ran `serve` in this process left the
        # root logger at INFO, and init's own records (Alembic's) then reach caplog too.
        return [r.getMessage() for r in caplog.records if r.name == "numbind.serve"]

    with caplog.at_level(logging.WARNING, logger="numbind.serve"):
        _warn_unnamed_listen_host(_settings(tmp_path, "127.0.0.1:7443"))
        assert warned() == []
        _warn_unnamed_listen_host(_settings(tmp_path, "127.0.0.2:7443"))
    (message,) = warned()
    assert "does not name 127.0.0.2" in message
    assert f"numbind admin init --data-dir {tmp_path / 'data'}" in message  # its own
    assert "--server-name 127.0.0.2" in message


def test_a_hostname_failure_names_the_host_and_the_fix() -> None:
    assert connection_problem(HOSTNAME_FAILURE, "127.0.0.2:24001") == (
        "the registry's certificate does not name 127.0.0.2; re-issue it with "
        "`numbind admin init --data-dir DIR --server-name 127.0.0.2` (DIR: the registry's own "
        "data dir) and restart the registry"
    )
    # Several addresses: the SDK checks every process against the first one's host.
    why = connection_problem(HOSTNAME_FAILURE, "10.0.0.1:7443,10.0.0.2:7443")
    assert why is not None and "does not name 10.0.0.1;" in why
    why = connection_problem(HOSTNAME_FAILURE)
    assert why is not None and "--server-name HOST" in why
    # A certificate from another CA is still the handshake, not a name.
    other_ca = (
        "ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): CERTIFICATE_VERIFY_FAILED"
    )
    assert connection_problem(other_ca, "127.0.0.1:1") == (
        "the TLS handshake failed (another registry, or a stale bundle?)"
    )


def _server_pair(ca: CertificateAuthority, pki: Path) -> tuple[bytes, bytes]:
    cert_pem, key_pem = ca.issue_server_cert()
    (pki / SERVER_CERT_FILE).write_bytes(cert_pem)
    (pki / SERVER_KEY_FILE).write_bytes(key_pem)
    return key_pem, cert_pem


def test_load_server_pair_returns_a_matching_pair(ca: CertificateAuthority, tmp_path: Path) -> None:
    written = _server_pair(ca, tmp_path)
    assert load_server_pair(tmp_path) == written


@pytest.mark.parametrize(
    ("garbled", "want"),
    [
        (SERVER_KEY_FILE, "not an unencrypted PEM private key"),
        (SERVER_CERT_FILE, "not a PEM certificate"),
    ],
)
def test_load_server_pair_names_a_garbled_file(
    ca: CertificateAuthority, tmp_path: Path, garbled: str, want: str
) -> None:
    # gRPC, handed these, says only "Failed to bind to address": the check names the file.
    _server_pair(ca, tmp_path)
    (tmp_path / garbled).write_bytes(b"garbage\n")
    with pytest.raises(ValueError) as err:
        load_server_pair(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / garbled}: {want}; ")
    assert "numbind admin init" in str(err.value)


def test_load_server_pair_refuses_a_key_of_another_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    _server_pair(ca, tmp_path)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / SERVER_KEY_FILE).write_bytes(other)
    with pytest.raises(ValueError, match="not the key of the certificate"):
        load_server_pair(tmp_path)
