"""Bad requests for what carriers (and platforms) call to ask: Tokens.Evaluate, Carriers and
Holders. The values they are built from, and the rules they follow, are in _bad_inputs."""

from __future__ import annotations

import os
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st
from numbind.protocol import attestation
from numbind.protocol.limits import (
    MAX_EVALUATE,
    MAX_HOLDER_NUMBERS,
    MAX_HOLDER_PLATFORMS,
    MAX_LIFECYCLE_EVENTS,
)
from numbind.v1 import carriers_pb2, holders_pb2, tokens_pb2

from tests.faults._bad_inputs import (
    DAY,
    US,
    Drawn,
    Env,
    bad_enum,
    bad_key_ids,
    bad_request_ids,
    bad_times,
    bad_token_values,
    bad_tokens,
    good_times,
    good_tokens,
    kinds,
    oversize,
    printable,
    timestamp,
)

# ---- Tokens -------------------------------------------------------------------------------------


def evaluate(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = tokens_pb2.EvaluateRequest(
            key_id=env.key_id,
            blinded_elements=draw(st.lists(st.sampled_from(env.tokens), min_size=1, max_size=4)),
        )
        kind = draw(kinds(["key", "empty", "element", "identity"], ["oversize"]))
        if kind == "key":  # "" is the active key: not a defect
            name, req.key_id = draw(bad_key_ids(env).filter(lambda d: d[1] != ""))
        elif kind == "empty":
            name = "no elements"
            del req.blinded_elements[:]
        elif kind == "oversize":
            name = f"{MAX_EVALUATE + 1} elements"
            req = oversize(req, "blinded_elements", MAX_EVALUATE)
        elif kind == "identity":
            name = "identity element"
            req.blinded_elements[draw(st.integers(0, len(req.blinded_elements) - 1))] = bytes(32)
        else:
            name, value = draw(bad_token_values().filter(lambda d: d[1] != b""))
            req.blinded_elements[draw(st.integers(0, len(req.blinded_elements) - 1))] = value
        return "Evaluate: " + name, req

    return build()


# ---- Carriers ---------------------------------------------------------------------------------


def report_lifecycle(env: Env) -> st.SearchStrategy[Drawn]:
    event = st.builds(
        carriers_pb2.LifecycleEvent,
        token=good_tokens(env),
        kind=st.integers(1, 5),
        effective_at=good_times(env),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = carriers_pb2.ReportLifecycleRequest(
            request_id=draw(printable), events=draw(st.lists(event, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.events) - 1))
        kind = draw(kinds(["rid", "empty", "token", "kind", "time"], ["oversize"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no events"
            del req.events[:]
        elif kind == "oversize":
            name = f"{MAX_LIFECYCLE_EVENTS + 1} events"
            req = oversize(req, "events", MAX_LIFECYCLE_EVENTS)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.events[at].token.CopyFrom(token)
        elif kind == "kind":
            name = "lifecycle kind out of range"
            req.events[at].kind = draw(st.one_of(st.just(0), st.integers(6, 1000), bad_enum))  # type: ignore[assignment]
        else:
            name, ts = draw(bad_times(env))
            req.events[at].effective_at.CopyFrom(ts)
        return "ReportLifecycle: " + name, req

    return build()


# ---- Holders ------------------------------------------------------------------------------------


def _signed(
    env: Env,
    *,
    token: bytes | None = None,
    key_id: str | None = None,
    carrier_id: str | None = None,
    purpose: int = attestation.Purpose.QUERY,
    issued: int | None = None,
    lifetime: int = 120,
    nonce: bytes | None = None,
) -> holders_pb2.SignedAttestation:
    issued_us = (env.now if issued is None else issued) * US

    def ts(us: int) -> Timestamp:
        return timestamp(us // US, (us % US) * 1000)

    # Built and signed here, not by attestation.sign: that refuses the malformed ones.
    att = holders_pb2.HolderAttestation(
        carrier_id=env.carrier_id if carrier_id is None else carrier_id,
        token=env.tokens[0] if token is None else token,
        key_id=env.key_id if key_id is None else key_id,
        subject="fuzz-subscriber",
        tenure_start=ts((env.now - 400 * DAY) * US),
        purpose=purpose,  # type: ignore[arg-type]
        nonce=os.urandom(16) if nonce is None else nonce,
        issued_at=ts(issued_us),
        expires_at=ts(issued_us + lifetime * US),
    )
    data = att.SerializeToString(deterministic=True)
    signature = env.signing_key.sign(attestation.SIGNING_CONTEXT + data).signature
    return holders_pb2.SignedAttestation(attestation=data, signature=signature)


def bad_attestations(env: Env, purpose: int) -> st.SearchStrategy[tuple[str, Any]]:
    wrong = (
        attestation.Purpose.REVOKE
        if purpose == attestation.Purpose.QUERY
        else attestation.Purpose.QUERY
    )

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, holders_pb2.SignedAttestation]:
        kind = draw(
            st.sampled_from(
                [
                    "garbage",
                    "signature",
                    "expired",
                    "not yet valid",
                    "too long-lived",
                    "wrong purpose",
                    "other carrier",
                    "malformed token",
                    "bogus key_id",
                    "empty",
                ]
            )
        )
        if kind == "garbage":
            blob = draw(st.binary(max_size=300))
            return "attestation garbage", holders_pb2.SignedAttestation(
                attestation=blob, signature=draw(st.binary(max_size=80))
            )
        if kind == "empty":
            return "attestation empty", holders_pb2.SignedAttestation()
        if kind == "signature":
            good = _signed(env, purpose=purpose)
            sig = bytearray(good.signature)
            sig[draw(st.integers(0, len(sig) - 1))] ^= 1 << draw(st.integers(0, 7))
            good.signature = bytes(sig)
            return "attestation bad signature", good
        if kind == "expired":
            return "attestation expired", _signed(env, purpose=purpose, issued=env.now - 3600)
        if kind == "not yet valid":
            return "attestation not yet valid", _signed(env, purpose=purpose, issued=env.now + 3600)
        if kind == "too long-lived":
            return "attestation lifetime too long", _signed(env, purpose=purpose, lifetime=7200)
        if kind == "wrong purpose":
            return "attestation wrong purpose", _signed(env, purpose=wrong)
        if kind == "other carrier":
            return "attestation of another carrier", _signed(
                env, purpose=purpose, carrier_id=env.other_carrier_id
            )
        if kind == "malformed token":
            _, value = draw(bad_token_values())
            return "attestation malformed token", _signed(env, purpose=purpose, token=value)
        name, key_id = draw(bad_key_ids(env))
        return "attestation " + name, _signed(env, purpose=purpose, key_id=key_id)

    return build()


def query_bindings(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        kind = draw(kinds(["att", "att", "att", "empty"], ["oversize"]))
        if kind == "empty":
            return "QueryBindings: no attestations", holders_pb2.QueryBindingsRequest()
        if kind == "oversize":
            atts = [_signed(env) for _ in range(MAX_HOLDER_NUMBERS + 1)]
            return f"QueryBindings: {len(atts)} attestations", holders_pb2.QueryBindingsRequest(
                attestations=atts
            )
        name, bad = draw(bad_attestations(env, attestation.Purpose.QUERY))
        # Valid attestations beside the bad one: none may be consumed (validate first).
        good = [_signed(env) for _ in range(draw(st.integers(0, 2)))]
        atts = [*good, bad] if draw(st.booleans()) else [bad, *good]
        return "QueryBindings: " + name, holders_pb2.QueryBindingsRequest(attestations=atts)

    return build()


def request_revocation(env: Env) -> st.SearchStrategy[Drawn]:
    revoke = attestation.Purpose.REVOKE

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = holders_pb2.RequestRevocationRequest(
            request_id=draw(printable),
            attestation=_signed(env, purpose=revoke),
            scope=holders_pb2.REVOCATION_SCOPE_ALL_PRE_TENURE,
        )
        kind = draw(st.sampled_from(["rid", "scope", "platforms", "att", "att"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "scope":
            name = "scope out of range"
            req.scope = draw(st.one_of(st.just(0), st.integers(4, 100), bad_enum))  # type: ignore[assignment]
        elif kind == "platforms":
            req.scope = holders_pb2.REVOCATION_SCOPE_PLATFORMS
            sub = draw(st.sampled_from(["empty", "oversize", "malformed"]))
            if sub == "empty":
                name = "PLATFORMS scope without platforms"
            elif sub == "oversize":
                name = f"{MAX_HOLDER_PLATFORMS + 1} platforms"
                req.platform_ids.extend([env.platform_id] * (MAX_HOLDER_PLATFORMS + 1))
            else:
                name = "malformed platform id"
                req.platform_ids.extend(
                    [draw(st.sampled_from(["", "UPPER", "-x", "a b", "x" * 64, "<b>"]))]
                )
        else:
            name, bad = draw(bad_attestations(env, revoke))
            req.attestation.CopyFrom(bad)
        return "RequestRevocation: " + name, req

    return build()


def get_revocation(env: Env) -> st.SearchStrategy[Drawn]:
    ids = st.one_of(
        st.just(""),
        printable.filter(lambda s: s != env.revocation_id),
        st.text(max_size=300).filter(lambda s: s != env.revocation_id),
        st.sampled_from([*env.order_ids, env.key_id, env.platform_id]),
    )
    return ids.map(
        lambda r: (
            "GetRevocation: unknown or malformed id",
            holders_pb2.GetRevocationRequest(revocation_id=r),
        )
    )
