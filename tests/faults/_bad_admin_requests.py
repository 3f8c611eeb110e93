"""Bad requests for the Admin service: registrations, suspension, attestation keys and the
token-key calls. The values they are built from are in _bad_inputs."""

from __future__ import annotations

import re

import nacl.signing
from hypothesis import strategies as st
from numbind.v1 import admin_pb2

from tests.faults._bad_inputs import (
    Drawn,
    Env,
    bad_enum,
    bad_key_ids,
    bad_request_ids,
    printable,
)

# ---- Admin ----------------------------------------------------------------------------------

_PRINCIPAL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_bad_principal_ids = st.one_of(
    st.sampled_from(["", "UPPER", "-dash", ".dot", "a b", "x" * 64, "名字", "a/b", "<b>"]),
    st.text(min_size=1, max_size=80).filter(lambda s: not _PRINCIPAL_ID.fullmatch(s)),
)


def _names(env: Env) -> st.SearchStrategy[str]:
    """Fresh names to register (were a bad registration accepted, it would take one)."""
    return st.integers(0, 10**9).map(lambda n: f"fz{n}")


def _unknown_names(env: Env) -> st.SearchStrategy[str]:
    """Names no principal has: never drawn by _names."""
    return st.integers(0, 10**9).map(lambda n: f"unknown{n}")


def _bad_display_names() -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.sampled_from([("display_name empty", ""), ("display_name blank", "   ")]),
        st.integers(65, 2000).map(lambda n: ("display_name too long", "名" * n)),
        st.sampled_from(["a\x00b", "line\nbreak", "tab\there", "\u202eevil", "bell\x07"]).map(
            lambda s: ("display_name not printable", s)
        ),
    )


def _bad_categories() -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.integers(65, 2000).map(lambda n: ("category too long", "c" * n)),
        st.sampled_from(
            ["<script>alert(1)</script>", "<b>bank</b>", "not-a-category", "Bank "]
        ).map(lambda s: ("category outside the vocabulary", s)),
    )


def _bad_attestation_keys() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(
        st.binary(max_size=64)
        .filter(lambda b: len(b) != 32)
        .map(lambda b: ("attestation key wrong length", b)),
        st.just(("attestation key all zero", bytes(32))),
        # The identity and a small-order point: valid encodings, useless as keys.
        st.sampled_from(
            [
                ("attestation key identity", b"\x01" + bytes(31)),
                (
                    "attestation key small order",
                    bytes.fromhex(
                        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
                    ),
                ),
            ]
        ),
    )


def register_platform(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.RegisterPlatformRequest(
            request_id=draw(printable),
            platform_id=draw(_names(env)),
            display_name="Fuzz Platform",
            category="other",
            csr_pem=env.csr_pem,
        )
        kind = draw(st.sampled_from(["rid", "id", "exists", "name", "category", "csr"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "id":
            name = "malformed platform_id"
            req.platform_id = draw(_bad_principal_ids)
        elif kind == "exists":
            name = "platform_id taken"
            req.platform_id = env.platform_id
        elif kind == "name":
            name, req.display_name = draw(_bad_display_names())
        elif kind == "category":
            name, req.category = draw(_bad_categories())
        else:
            name = "csr not a CSR"
            req.csr_pem = draw(
                st.sampled_from(["", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "x"])
            )
        return "RegisterPlatform: " + name, req

    return build()


def register_carrier(env: Env) -> st.SearchStrategy[Drawn]:
    good_key = nacl.signing.SigningKey(b"\x07" * 32).verify_key.encode()

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.RegisterCarrierRequest(
            request_id=draw(printable),
            carrier_id=draw(_names(env)),
            display_name="Fuzz Carrier",
            csr_pem=env.csr_pem,
            attestation_public_key=good_key,
        )
        kind = draw(st.sampled_from(["rid", "id", "exists", "name", "key", "csr"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "id":
            name = "malformed carrier_id"
            req.carrier_id = draw(_bad_principal_ids)
        elif kind == "exists":
            name = "carrier_id taken"
            req.carrier_id = env.carrier_id
        elif kind == "name":
            name, req.display_name = draw(_bad_display_names())
        elif kind == "key":
            name, req.attestation_public_key = draw(_bad_attestation_keys())
        else:
            name = "csr not a CSR"
            req.csr_pem = draw(st.sampled_from(["", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"]))
        return "RegisterCarrier: " + name, req

    return build()


def set_suspended(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.SetPrincipalSuspendedRequest(
            request_id=draw(printable),
            role=admin_pb2.PRINCIPAL_ROLE_PLATFORM,
            principal_id=env.platform_id,
            suspended=True,
        )
        kind = draw(st.sampled_from(["role", "id", "unknown"]))
        if kind == "role":
            name = "role out of range"
            req.role = draw(st.one_of(st.just(0), st.integers(4, 100), bad_enum))  # type: ignore[assignment]
        elif kind == "id":
            name = "malformed principal_id"
            req.principal_id = draw(_bad_principal_ids)
        else:
            name = "unknown principal"
            req.principal_id = draw(_unknown_names(env))
        return "SetPrincipalSuspended: " + name, req

    return build()


def set_attestation_key(env: Env) -> st.SearchStrategy[Drawn]:
    good_key = nacl.signing.SigningKey(b"\x09" * 32).verify_key.encode()

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = admin_pb2.SetCarrierAttestationKeyRequest(
            request_id=draw(printable), carrier_id=env.carrier_id, attestation_public_key=good_key
        )
        kind = draw(st.sampled_from(["id", "unknown", "platform", "key"]))
        if kind == "id":
            name = "malformed carrier_id"
            req.carrier_id = draw(_bad_principal_ids)
        elif kind == "unknown":
            name = "unknown carrier"
            req.carrier_id = draw(_unknown_names(env))
        elif kind == "platform":
            name = "a platform's id as carrier_id"
            req.carrier_id = env.platform_id
        else:
            name, req.attestation_public_key = draw(_bad_attestation_keys())
        return "SetCarrierAttestationKey: " + name, req

    return build()


def rotate_key(env: Env) -> st.SearchStrategy[Drawn]:
    return bad_request_ids.map(
        lambda r: ("RotateKey: bad request_id", admin_pb2.RotateKeyRequest(request_id=r))
    )


def retire_key(env: Env) -> st.SearchStrategy[Drawn]:
    return st.one_of(st.just(("the active key", env.key_id)), bad_key_ids(env)).map(
        lambda d: (
            "RetireKey: " + d[0],
            admin_pb2.RetireKeyRequest(request_id="retire-fuzz", key_id=d[1]),
        )
    )


def export_key(env: Env) -> st.SearchStrategy[Drawn]:
    # "" exports the active key, like Evaluate's default: not a defect.
    return (
        bad_key_ids(env)
        .filter(lambda d: d[1] != "")
        .map(lambda d: ("ExportKey: " + d[0], admin_pb2.ExportKeyRequest(key_id=d[1])))
    )
