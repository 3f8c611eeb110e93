"""A bundle's registry address is checked whole when the bundle is loaded or written: a bad
one is refused there by name, as a BundleError, not met at the first call as a ValueError,
a gRPC UNKNOWN or ten seconds of retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from numbind.protocol.addresses import parse_registry
from numbind.protocol.bundle import Bundle, BundleError, make_client_key_and_csr
from numbind.registry.pki import CertificateAuthority, PrincipalId
from numbind.sdk.channel import channel_target

REFUSED = [
    # (registry, what the message must say besides the address)
    ("127.0.0.1:２３００１", "ASCII digits"),  # full-width digits: str.isdigit takes them
    ("127.0.0.1:²", "ASCII digits"),  # int() could not read it
    ("127.0.0.1:0", "1..65535"),
    ("127.0.0.1:99999", "1..65535"),
    ("[]:23001", "brackets only around an IPv6"),
    ("[127.0.0.1]:23001", "brackets only around an IPv6"),
    ("[127.0.0.1]:23001,127.0.0.1:23002", "brackets only around an IPv6"),
    ("foo bar:23001", "want a host name"),
    ("127.0.0.01:23001", "without leading zeros"),
    ("127.1:23001,127.0.0.1:23002", "want an IPv4 address"),
    ("127.0.0.1:23001,127.0.0.01:23002", "without leading zeros"),
    ("127.0.0.1:23001,localhost:23002", "several addresses must be IP addresses"),
    ("a.example:1,b.example:1", "several addresses must be IP addresses"),
    ("127.0.0.1:23001,[::1]:23001", "mix IPv4 and IPv6"),
    ("127.0.0.1:23001,127.0.0.1:023001", "127.0.0.1:23001 twice"),
    ("[::1]:1,[0:0::1]:1", r"\[::1\]:1 twice"),
    ("127.0.0.1:23001,", "empty entry"),
    (" ", "is not host:port"),
    ("::1:7443", "write IPv6 hosts as"),
]

ACCEPTED = [
    "registry.example:7443",
    "LOCALHOST:1",
    " 127.0.0.1:23001 ",
    "127.0.0.1:65535",
    "[::1]:7443",
    "10.0.0.1:7443, 10.0.0.2:7443,10.0.0.3:7444",
    "[::ffff:127.0.0.1]:23001,[::ffff:127.0.0.1]:23002",
    "0.0.0.0:23001",
]


def _bundle_naming(ca: CertificateAuthority, directory: Path, registry: str) -> Path:
    """A good bundle whose bundle.json then names ``registry`` (as a hand edit would)."""
    key_pem, csr_pem = make_client_key_and_csr("acme")
    Bundle.write(
        directory,
        registry="127.0.0.1:7443",
        role="platform",
        principal_id="acme",
        ca_pem=ca.cert_pem,
        cert_pem=ca.sign_csr(csr_pem, PrincipalId("platform", "acme")),
        key_pem=key_pem,
    )
    meta = json.loads((directory / "bundle.json").read_text())
    (directory / "bundle.json").write_text(json.dumps({**meta, "registry": registry}))
    return directory


@pytest.mark.parametrize(("registry", "needle"), REFUSED)
def test_a_bad_address_is_refused_by_name_at_load(
    ca: CertificateAuthority, tmp_path: Path, registry: str, needle: str
) -> None:
    directory = _bundle_naming(ca, tmp_path / "bundle", registry)
    with pytest.raises(BundleError, match=needle) as refused:
        Bundle.load(directory)
    # The message names the address (or the list) it refuses.
    named = [a.strip() for a in registry.split(",") if a.strip()] or [registry.strip()]
    assert any(repr(a) in str(refused.value) for a in [*named, registry])


@pytest.mark.parametrize(("registry", "needle"), REFUSED)
def test_a_bad_address_is_refused_when_written(
    ca: CertificateAuthority, tmp_path: Path, registry: str, needle: str
) -> None:
    with pytest.raises(BundleError, match=needle):
        Bundle.write(
            tmp_path / "bundle",
            registry=registry,
            role="admin",
            principal_id="a",
            ca_pem=ca.cert_pem,
            cert_pem=b"",
            key_pem=b"",
        )
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(("registry", "needle"), REFUSED)
def test_a_target_given_directly_meets_the_same_rule(registry: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        channel_target(registry)


@pytest.mark.parametrize("registry", ACCEPTED)
def test_good_addresses_load_and_make_a_channel_target(
    ca: CertificateAuthority, tmp_path: Path, registry: str
) -> None:
    bundle = Bundle.load(_bundle_naming(ca, tmp_path / "bundle", registry))
    assert bundle.registry == registry
    channel_target(bundle.registry)


def test_the_canonical_form_is_what_duplicates_are_compared_in() -> None:
    parsed = parse_registry("[0:0::1]:07443,[::2]:7443")
    assert [a.canonical for a in parsed] == ["[::1]:7443", "[::2]:7443"]
    assert [a.family for a in parse_registry("Registry.Example:1")] == [None]
