"""numbind.protocol.manifest: what a valid signature does not make acceptable — malformed
bodies and texts, unsorted members, bad addresses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from numbind.protocol import note
from numbind.protocol.manifest import (
    FORMAT_LINE,
    MalformedManifest,
    Manifest,
    TokenPublicKey,
    TokenService,
    check_address,
    generate_federation_key,
    open_manifest,
)
from numbind.registry.pki import CertificateAuthority, PrincipalId

from tests.unit._manifest import T0, make_cas, make_token_key, manifest, member


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    return make_cas(tmp_path_factory.mktemp("cas"))


@pytest.fixture(scope="module")
def token_key() -> TokenPublicKey:
    return make_token_key()


@pytest.fixture(scope="module")
def key() -> note.Ed25519Signer:
    return generate_federation_key("demo")


@pytest.fixture
def make(cas: list[CertificateAuthority], token_key: TokenPublicKey) -> Callable[..., Manifest]:
    def build(**kwargs: Any) -> Manifest:
        return manifest(cas, token_key, **kwargs)

    return build


# -- malformed bodies under a valid signature -----------------------------------------------


def _body(make: Callable[..., Manifest]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(make(members=3).text().split(b"\n")[1])
    return body


def _line(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _signed_text(key: note.Ed25519Signer, text: str) -> bytes:
    return note.sign_note(text.encode(), key)


_DELETE = object()
# (case, JSON path, new value or _DELETE, what the error names). "<CA1>" and friends are
# replaced with real certificates in the test.
BODY_CASES: list[tuple[str, str, Any, str]] = [
    ("version zero", "version", 0, "version: got 0"),
    ("version as string", "version", "2", "version: got '2'"),
    ("version as bool", "version", True, "version: got True"),
    ("huge version", "version", 2**60, "version: got"),
    ("negative issued_at", "issued_at", -1, "issued_at: got -1"),
    ("unknown field", "extra", 1, "want exactly the fields"),
    ("missing field", "issued_at", _DELETE, "want exactly the fields"),
    ("bad federation id", "federation", "Demo", "federation: got 'Demo'"),
    ("bad member id", "members.0.id", "Hub!", ".id: got 'Hub!'"),
    ("bad address", "members.0.address", "nohost", ".address: got 'nohost'"),
    ("empty name", "members.0.name", " ", ".name: got ' '"),
    ("unknown role", "members.0.roles", ["king"], ".roles: got ['king']"),
    (
        "unsorted roles",
        "members.1.roles",
        ["token-service", "lifecycle-authority"],
        ".roles: got",
    ),
    ("roles not a list", "members.0.roles", "x", ".roles: got 'str'"),
    ("leaf as CA", "members.0.ca_pem", "<LEAF>", "BasicConstraints ca=False"),
    ("two certs", "members.0.ca_pem", "<CA1x2>", "exactly one"),
    ("not PEM", "members.0.ca_pem", "hello", "one PEM CA certificate"),
    ("text around PEM", "members.0.ca_pem", "<TEXT+CA1>", "canonical PEM"),
    ("no members", "members", [], "members: got '0 members'"),
    ("shared CA", "members.2.ca_pem", "<CA1>", "share one ca_pem (CA key)"),
    ("shared address", "members.2.address", "127.0.0.1:7444", "share one address"),
    ("second authority", "members.1.roles", ["lifecycle-authority"], "exactly one"),
    ("no authority", "members.0.roles", ["token-service"], "exactly one lifecycle"),
    ("bad key id", "token_service.active_key_id", "nope", "active_key_id: got"),
    (
        "not an element",
        "token_service.keys",
        {"00aa11bb22cc33dd": "/" * 42 + "8="},
        "ristretto255",
    ),
    ("keys not an object", "token_service.keys", [], "token_service.keys: got 'list'"),
    (
        "token service elsewhere than its member",
        "token_service.address",
        "127.0.0.1:9",
        "token-service member hub",
    ),
]


def _resolve(value: Any, cas: list[CertificateAuthority]) -> Any:
    ca1 = cas[1].cert_pem.decode()
    if value == "<LEAF>":
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        return (
            cas[1].issue_client_cert(PrincipalId("platform", "p"), leaf_key.public_key()).decode()
        )
    return (
        {"<CA1>": ca1, "<CA1x2>": ca1 * 2, "<TEXT+CA1>": "note\n" + ca1}.get(value, value)
        if isinstance(value, str)
        else value
    )


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = body
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is _DELETE:
        target.pop(last)
    else:
        target[int(last) if last.isdigit() else last] = value


@pytest.mark.parametrize(
    ("case", "path", "value", "want"), BODY_CASES, ids=[c[0] for c in BODY_CASES]
)
def test_malformed_body_under_a_valid_signature_is_refused(
    case: str,
    path: str,
    value: Any,
    want: str,
    cas: list[CertificateAuthority],
    make: Callable[..., Manifest],
    key: note.Ed25519Signer,
) -> None:
    body = _body(make)
    _set(body, path, _resolve(value, cas))
    data = _signed_text(key, f"{FORMAT_LINE}\n{_line(body)}\n")
    with pytest.raises(MalformedManifest) as info:
        open_manifest(data, key.verifier)
    assert want in info.value.message, (case, info.value.message)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("numbind/federation-manifest/v2\n{BODY}\n", "want the lines"),
        ("{BODY}\n", "want the lines"),
        (FORMAT_LINE + "\n{BODY}\nextra\n", "want the lines"),
        (FORMAT_LINE + "\n{SPACED}\n", "not canonical"),
        (FORMAT_LINE + "\n{UNSORTED}\n", "not canonical"),
        (FORMAT_LINE + '\n{"version":1,"version":2}\n', "each JSON key once"),
        (FORMAT_LINE + '\n{"version":1.0}\n', "integers only"),
        (FORMAT_LINE + '\n{"version":NaN}\n', "integers only"),
        (FORMAT_LINE + "\n[1,2]\n", "a JSON object"),
        (FORMAT_LINE + "\n{not json\n", "not JSON"),
    ],
)
def test_malformed_text_under_a_valid_signature_is_refused(
    text: str, want: str, make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    body = _body(make)
    spaced = json.dumps(body, sort_keys=True)
    unsorted = json.dumps(dict(reversed(list(body.items()))), separators=(",", ":"))
    text = text.replace("{BODY}", _line(body)).replace("{SPACED}", spaced)
    text = text.replace("{UNSORTED}", unsorted)
    with pytest.raises(MalformedManifest, match=want):
        open_manifest(_signed_text(key, text), key.verifier)


def test_members_must_be_sorted_and_distinct(
    cas: list[CertificateAuthority], token_key: TokenPublicKey
) -> None:
    hub = member(cas[0], "hub", 1, ("lifecycle-authority",))
    a = member(cas[1], "a", 2)
    ts = TokenService("h:1", token_key.key_id, (token_key,))
    with pytest.raises(MalformedManifest, match="distinct member ids in ascending order"):
        Manifest("demo", 1, T0, ts, (hub, a))
    with pytest.raises(MalformedManifest, match="distinct member ids"):
        Manifest("demo", 1, T0, ts, (a, a, hub))


@pytest.mark.parametrize(
    "address",
    [
        "a..b:1",
        "a-.b:1",
        "host",
        "host:0",
        "host:65536",
        "host:080",
        ":80",
        "::1:80",
        "[zz]:80",
        "a b:80",
        "-a:1",
    ],
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(MalformedManifest, match="addr: got"):
        check_address("addr", address)


@pytest.mark.parametrize(
    "address", ["127.0.0.1:7443", "[::1]:7443", "registry.example:443", "localhost:1"]
)
def test_good_addresses_pass(address: str) -> None:
    assert check_address("addr", address) == address
