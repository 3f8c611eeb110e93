"""Bad requests for the Platforms service: publish, withdraw, digest, listings, reassigned
checks, the feed and its acks. The values they are built from are in _bad_inputs."""

from __future__ import annotations

from hypothesis import strategies as st
from numbind.protocol.digest import MAX_BUCKET_BITS
from numbind.protocol.limits import (
    MAX_ACKS,
    MAX_BINDINGS,
    MAX_PAGE_SIZE,
    MAX_REASON,
    MAX_REASSIGNED_QUERIES,
)
from numbind.v1 import common_pb2, platforms_pb2

from tests.faults._bad_inputs import (
    Drawn,
    Env,
    bad_account_refs,
    bad_enum,
    bad_key_ids,
    bad_request_ids,
    bad_times,
    bad_tokens,
    good_times,
    good_tokens,
    kinds,
    long_text,
    oversize,
    printable,
)

# ---- Platforms -----------------------------------------------------------------------------


def publish_bindings(env: Env) -> st.SearchStrategy[Drawn]:
    binding = st.builds(
        common_pb2.Binding,
        token=good_tokens(env),
        account_ref=st.binary(min_size=1, max_size=64),
        bound_at=good_times(env),
        kind=st.integers(1, 5),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.PublishBindingsRequest(
            request_id=draw(printable), bindings=draw(st.lists(binding, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.bindings) - 1))
        kind = draw(kinds(["rid", "empty", "token", "ref", "time", "kind"], ["oversize"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no bindings"
            del req.bindings[:]
        elif kind == "oversize":
            name = f"{MAX_BINDINGS + 1} bindings"
            req = oversize(req, "bindings", MAX_BINDINGS)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.bindings[at].token.CopyFrom(token)
        elif kind == "ref":
            name, req.bindings[at].account_ref = draw(bad_account_refs())
        elif kind == "time":
            name, ts = draw(bad_times(env))
            req.bindings[at].bound_at.CopyFrom(ts)
        else:
            name = "binding kind out of range"
            req.bindings[at].kind = draw(st.one_of(st.just(0), st.integers(6, 1000), bad_enum))  # type: ignore[assignment]
        return "PublishBindings: " + name, req

    return build()


def withdraw_bindings(env: Env) -> st.SearchStrategy[Drawn]:
    key = st.builds(
        common_pb2.BindingKey,
        token=good_tokens(env),
        account_ref=st.binary(min_size=1, max_size=64),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.WithdrawBindingsRequest(
            request_id=draw(printable), bindings=draw(st.lists(key, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.bindings) - 1))
        kind = draw(kinds(["rid", "empty", "token", "ref"], ["oversize"]))
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no bindings"
            del req.bindings[:]
        elif kind == "oversize":
            name = f"{MAX_BINDINGS + 1} keys"
            req = oversize(req, "bindings", MAX_BINDINGS)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.bindings[at].token.CopyFrom(token)
        else:
            name, req.bindings[at].account_ref = draw(bad_account_refs())
        return "WithdrawBindings: " + name, req

    return build()


def get_digest(env: Env) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.GetDigestRequest(
            bucket_bits=draw(st.integers(0, MAX_BUCKET_BITS)), key_id=env.key_id
        )
        if draw(st.booleans()):
            name = "bucket_bits out of range"
            req.bucket_bits = draw(st.one_of(st.integers(MAX_BUCKET_BITS + 1, 2**32 - 1)))
        else:
            name, req.key_id = draw(bad_key_ids(env).filter(lambda d: d[1] != ""))
        return "GetDigest: " + name, req

    return build()


def list_bindings(env: Env, rpc: str) -> st.SearchStrategy[Drawn]:
    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        bits = draw(st.integers(0, MAX_BUCKET_BITS))
        req = platforms_pb2.ListBindingsRequest(
            bucket_bits=bits,
            bucket=draw(st.integers(0, (1 << bits) - 1)),
            key_id=env.key_id,
            page_size=draw(st.integers(0, MAX_PAGE_SIZE)),
        )
        kind = draw(st.sampled_from(["bits", "bucket", "size", "token", "key"]))
        if kind == "bits":
            name = "bucket_bits out of range"
            req.bucket_bits = draw(st.integers(MAX_BUCKET_BITS + 1, 2**32 - 1))
        elif kind == "bucket":
            name = "bucket out of range"
            req.bucket = draw(st.integers(1 << bits, 2**32 - 1))
        elif kind == "size":
            name = "page_size out of range"
            req.page_size = draw(st.integers(MAX_PAGE_SIZE + 1, 2**32 - 1))
        elif kind == "token":
            name = "page_token forged"
            req.page_token = draw(
                st.one_of(
                    st.text(min_size=1, max_size=20),
                    st.sampled_from(["A", "v1:", "%%%"]),
                    long_text("A/+=", 21, 300),
                )
            )
        else:
            name, req.key_id = draw(bad_key_ids(env).filter(lambda d: d[1] != ""))
        return f"{rpc}: {name}", req

    return build()


def check_reassigned(env: Env) -> st.SearchStrategy[Drawn]:
    query = st.builds(platforms_pb2.ReassignedQuery, token=good_tokens(env), since=good_times(env))

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.CheckReassignedRequest(
            queries=draw(st.lists(query, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.queries) - 1))
        kind = draw(kinds(["empty", "token", "time"], ["oversize"]))
        if kind == "empty":
            name = "no queries"
            del req.queries[:]
        elif kind == "oversize":
            name = f"{MAX_REASSIGNED_QUERIES + 1} queries"
            req = oversize(req, "queries", MAX_REASSIGNED_QUERIES)
        elif kind == "token":
            name, token = draw(bad_tokens(env))
            req.queries[at].token.CopyFrom(token)
        else:
            name, ts = draw(bad_times(env).filter(lambda d: d[0] != "time before 1990"))
            req.queries[at].since.CopyFrom(ts)
        return "CheckReassigned: " + name, req

    return build()


def stream_events(env: Env) -> st.SearchStrategy[Drawn]:
    return st.one_of(
        st.integers(2**63, 2**64 - 1).map(
            lambda s: ("after_seq >= 2^63", platforms_pb2.StreamEventsRequest(after_seq=s))
        ),
        st.integers(env.feed_head + 1, 2**63 - 1).map(
            lambda s: ("after_seq beyond the head", platforms_pb2.StreamEventsRequest(after_seq=s))
        ),
        st.integers(3601, 2**32 - 1).map(
            lambda h: (
                "heartbeat_seconds out of range",
                platforms_pb2.StreamEventsRequest(heartbeat_seconds=h),
            )
        ),
    ).map(lambda d: ("StreamEvents: " + d[0], d[1]))


def ack_events(env: Env) -> st.SearchStrategy[Drawn]:
    ack = st.builds(
        platforms_pb2.Ack,
        order_id=st.sampled_from(env.order_ids),
        outcome=st.sampled_from([1, 2]),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Drawn:
        req = platforms_pb2.AckEventsRequest(
            request_id=draw(printable), acks=draw(st.lists(ack, min_size=1, max_size=3))
        )
        at = draw(st.integers(0, len(req.acks) - 1))
        common = ["rid", "empty", "order", "outcome", "no reason", "long reason", "reason"]
        kind = draw(kinds(common, ["oversize"]))
        target = req.acks[at]
        if kind == "rid":
            name = "bad request_id"
            req.request_id = draw(bad_request_ids)
        elif kind == "empty":
            name = "no acks"
            del req.acks[:]
        elif kind == "oversize":
            name = f"{MAX_ACKS + 1} acks"
            req = oversize(req, "acks", MAX_ACKS)
        elif kind == "order":
            name = "unknown or malformed order id"
            target.order_id = draw(
                st.one_of(
                    st.just(""),
                    printable.filter(lambda s: s not in env.order_ids),
                    st.sampled_from([env.revocation_id, env.key_id, env.platform_id]),
                )
            )
        elif kind == "outcome":
            name = "outcome out of range"
            target.outcome = draw(st.one_of(st.just(0), st.integers(5, 100), bad_enum))  # type: ignore[assignment]
        elif kind == "no reason":
            name = "REJECTED without a reason"
            target.outcome = platforms_pb2.ACK_OUTCOME_REJECTED
            target.reason = draw(st.sampled_from(["", " ", "\n"]))
        elif kind == "long reason":
            name = "reason too long"
            target.outcome = platforms_pb2.ACK_OUTCOME_REJECTED
            target.reason = "r" * draw(st.integers(MAX_REASON + 1, 5000))
        else:
            name = "reason on an outcome that takes none"
            target.reason = draw(printable)
        return "AckEvents: " + name, req

    return build()
