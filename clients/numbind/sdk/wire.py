"""Every conversion between numbind.v1 protobuf messages and the SDK's own types.

The SDK's edge: the clients build requests and read responses only through these
functions, so no ``_pb2`` type reaches a caller, and a time, a token or an enum crosses the
wire in exactly one way. The registry's resolution is the microsecond; an unset Timestamp
means "none".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol.digest import EMPTY_DIGEST
from numbind.sdk.carrier_model import (
    Attestation,
    LifecycleReport,
    NumberView,
    PlatformView,
    RefusedRevocation,
    ReportSummary,
    RevocationProgress,
    RevocationStatus,
    Scope,
    UnavailableRegistry,
)
from numbind.sdk.errors import ErrorCode, ServerError
from numbind.sdk.model import (
    AckOutcome,
    AckSink,
    BucketDigest,
    EventCause,
    EventKind,
    FeedEvent,
    Item,
    Key,
    Kind,
    Reassigned,
    Record,
    from_us,
    to_us,
)
from numbind.sdk.tokenizer import TokenResult
from numbind.v1 import carriers_pb2, common_pb2, holders_pb2, platforms_pb2

_ORDER_STATES = {1: "PENDING", 2: "DELIVERED", 3: "DONE", 4: "REJECTED", 5: "OVERDUE"}
_ANSWERS = {
    platforms_pb2.REASSIGNED_ANSWER_REASSIGNED: Reassigned.REASSIGNED,
    platforms_pb2.REASSIGNED_ANSWER_NOT_REASSIGNED: Reassigned.NOT_REASSIGNED,
    platforms_pb2.REASSIGNED_ANSWER_NO_DATA: Reassigned.NO_DATA,
}


def _bad(what: str) -> ServerError:
    return ServerError(f"registry answer: {what}", code=ErrorCode.INVALID_RESPONSE)


# -- times --------------------------------------------------------------------------------


def timestamp_us(us: int) -> Timestamp:
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def timestamp(moment: datetime) -> Timestamp:
    """An aware datetime as a Timestamp (ValueError for a naive one)."""
    return timestamp_us(to_us(moment))


def us_of(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def instant(ts: Timestamp) -> datetime | None:
    """The UTC datetime of a Timestamp, or None when it is unset."""
    if not ts.seconds and not ts.nanos:
        return None
    return from_us(us_of(ts))


# -- bindings -----------------------------------------------------------------------------


def _token(key_id: str, value: bytes) -> common_pb2.Token:
    return common_pb2.Token(key_id=key_id, value=value)


def _enum(value: int) -> Any:
    # The stubs type proto enums as int NewTypes; our IntEnums are ints on the wire.
    return int(value)


def binding(key_id: str, item: Item) -> common_pb2.Binding:
    token, ref, us, kind = item
    return common_pb2.Binding(
        token=_token(key_id, token), account_ref=ref, bound_at=timestamp_us(us), kind=_enum(kind)
    )


def publish_request(
    request_id: str, key_id: str, items: Sequence[Item]
) -> platforms_pb2.PublishBindingsRequest:
    return platforms_pb2.PublishBindingsRequest(
        request_id=request_id, bindings=[binding(key_id, i) for i in items]
    )


def withdraw_request(
    request_id: str, key_id: str, keys: Sequence[tuple[bytes, bytes]], keep_at_least: int = 0
) -> platforms_pb2.WithdrawBindingsRequest:
    return platforms_pb2.WithdrawBindingsRequest(
        request_id=request_id,
        bindings=[
            common_pb2.BindingKey(token=_token(key_id, token), account_ref=ref)
            for token, ref in keys
        ],
        keep_at_least=keep_at_least,
    )


def publish_counts(
    resp: platforms_pb2.PublishBindingsResponse,
) -> tuple[int, int, int, int, int]:
    """(inserted, updated, unchanged, left revoked, revoked on arrival)."""
    return resp.inserted, resp.updated, resp.unchanged, resp.revoked, resp.revoked_on_arrival


def withdraw_counts(resp: platforms_pb2.WithdrawBindingsResponse) -> tuple[int, int]:
    """(withdrawn, not found)."""
    return resp.withdrawn, resp.not_found


def item_of(b: common_pb2.Binding) -> Item:
    return bytes(b.token.value), bytes(b.account_ref), us_of(b.bound_at), int(b.kind)


def record(b: common_pb2.Binding) -> Record:
    try:
        kind = Kind(b.kind)
    except ValueError:
        raise _bad(f"kind: unknown value {b.kind}") from None
    return Record(
        bytes(b.token.value), b.token.key_id, bytes(b.account_ref), from_us(us_of(b.bound_at)), kind
    )


def digest_request(bits: int, key_id: str) -> platforms_pb2.GetDigestRequest:
    return platforms_pb2.GetDigestRequest(bucket_bits=bits, key_id=key_id)


def list_request(
    bits: int, bucket: int, key_id: str, page_size: int, page_token: str
) -> platforms_pb2.ListBindingsRequest:
    return platforms_pb2.ListBindingsRequest(
        bucket_bits=bits,
        bucket=bucket,
        key_id=key_id,
        page_size=page_size,
        page_token=page_token,
    )


def revoked_item(b: platforms_pb2.RevokedBinding) -> tuple[Key, int]:
    """((token, account_ref), revoked_us) of a revoked binding."""
    return (bytes(b.binding.token.value), bytes(b.binding.account_ref)), us_of(b.revoked_at)


def bucket_digests(resp: platforms_pb2.GetDigestResponse, bits: int) -> dict[int, BucketDigest]:
    if resp.bucket_bits != bits:
        raise _bad(f"bucket_bits: got {resp.bucket_bits}, want {bits}")
    return {
        b.bucket: BucketDigest(b.bucket, b.count, bytes(b.digest) or EMPTY_DIGEST)
        for b in resp.buckets
    }


# -- reassigned-since ---------------------------------------------------------------------


def reassigned_request(
    tokens: Sequence[TokenResult], sinces: Sequence[datetime]
) -> platforms_pb2.CheckReassignedRequest:
    return platforms_pb2.CheckReassignedRequest(
        queries=[
            platforms_pb2.ReassignedQuery(token=_token(t.key_id, t.token), since=timestamp(since))
            for t, since in zip(tokens, sinces, strict=True)
        ]
    )


def reassigned_answers(resp: platforms_pb2.CheckReassignedResponse, asked: int) -> list[Reassigned]:
    if len(resp.answers) != asked:
        raise _bad(f"answers: got {len(resp.answers)}, want {asked}")
    try:
        return [_ANSWERS[a] for a in resp.answers]
    except KeyError as exc:
        raise _bad(f"answers: unknown value {exc.args[0]}") from None


# -- the event feed -----------------------------------------------------------------------


def feed_event(e: platforms_pb2.Event, feed: AckSink) -> FeedEvent:
    try:
        kind = EventKind(e.kind)
    except ValueError:
        raise _bad(f"events: unknown kind {e.kind}") from None
    try:
        cause = EventCause(e.cause)
    except ValueError:  # a cause this SDK does not know yet: still an event to act on
        cause = EventCause.UNSPECIFIED
    return FeedEvent(
        seq=e.seq,
        order_id=e.order_id,
        kind=kind,
        cause=cause,
        token=bytes(e.binding.token.value),
        key_id=e.binding.token.key_id,
        account_ref=bytes(e.binding.account_ref),
        bound_at=instant(e.binding.bound_at),
        tenure_start=instant(e.tenure_start),
        deadline=instant(e.deadline),
        revocation_id=e.revocation_id,
        _feed=feed,
        leaf_index=e.leaf_index if e.HasField("leaf_index") else None,
    )


def stream_request(after_seq: int, heartbeat_seconds: int) -> platforms_pb2.StreamEventsRequest:
    return platforms_pb2.StreamEventsRequest(
        after_seq=after_seq, heartbeat_seconds=heartbeat_seconds
    )


def stream_item(
    item: platforms_pb2.StreamEventsResponse, feed: AckSink
) -> tuple[int | None, list[FeedEvent]]:
    """(the registry's head sequence, no events) for a heartbeat; (None, events) otherwise."""
    if item.HasField("heartbeat"):
        return item.heartbeat.head_seq, []
    return None, [feed_event(e, feed) for e in item.events.events]


def ack_request(
    request_id: str, acks: Sequence[tuple[FeedEvent, AckOutcome, str]]
) -> platforms_pb2.AckEventsRequest:
    return platforms_pb2.AckEventsRequest(
        request_id=request_id,
        acks=[
            platforms_pb2.Ack(order_id=e.order_id, outcome=_enum(outcome), reason=reason)
            for e, outcome, reason in acks
        ],
    )


# -- carriers and holders -----------------------------------------------------------------


def lifecycle_request(
    request_id: str, reports: Sequence[LifecycleReport], tokens: Sequence[TokenResult]
) -> carriers_pb2.ReportLifecycleRequest:
    return carriers_pb2.ReportLifecycleRequest(
        request_id=request_id,
        events=[
            carriers_pb2.LifecycleEvent(
                token=_token(t.key_id, t.token),
                kind=_enum(r.event),
                effective_at=timestamp(r.effective_at),
            )
            for r, t in zip(reports, tokens, strict=True)
        ],
    )


def report_summary(resp: carriers_pb2.ReportLifecycleResponse, events: int) -> ReportSummary:
    return ReportSummary(
        events=events,
        applied=resp.applied,
        superseded=resp.superseded,
        orders_created=resp.orders_created,
        notices_created=resp.notices_created,
        revocation_ids=[resp.revocation_id] if resp.revocation_id else [],
        leaf_indices=list(resp.leaf_indices),
    )


def signed_attestation(att: Attestation) -> holders_pb2.SignedAttestation:
    return holders_pb2.SignedAttestation(attestation=att.data, signature=att.signature)


def query_request(attestations: Sequence[Attestation]) -> holders_pb2.QueryBindingsRequest:
    return holders_pb2.QueryBindingsRequest(
        attestations=[signed_attestation(a) for a in attestations]
    )


def number_views(
    tokens: Sequence[TokenResult], resp: holders_pb2.QueryBindingsResponse
) -> list[NumberView]:
    if len(resp.numbers) != len(tokens):
        raise _bad(f"numbers: got {len(resp.numbers)}, want {len(tokens)}")
    unavailable = unavailable_registries(resp.unavailable)
    return [
        NumberView(
            t.e164,
            instant(n.tenure_start),
            [
                PlatformView(
                    p.platform_id,
                    p.display_name,
                    p.category,
                    p.tenure_class == holders_pb2.TENURE_CLASS_PRE_TENURE,
                    p.active_count,
                    instant(p.earliest_bound_at),
                    instant(p.latest_bound_at),
                    p.open_revocation.revocation_id,
                    _ORDER_STATES.get(p.open_revocation.state, ""),
                    p.registry_id,
                    p.registry_name,
                    _refusal(p.refused_revocation) if p.HasField("refused_revocation") else None,
                )
                for p in n.platforms
            ],
            resp.order_deadline.ToTimedelta() if resp.HasField("order_deadline") else None,
            unavailable,
        )
        for t, n in zip(tokens, resp.numbers, strict=True)
    ]


def _refusal(r: holders_pb2.RefusedRevocation) -> RefusedRevocation:
    return RefusedRevocation(r.revocation_id, r.order_id, r.reason, instant(r.refused_at))


def unavailable_registries(
    items: Sequence[holders_pb2.UnavailableRegistry],
) -> tuple[UnavailableRegistry, ...]:
    return tuple(UnavailableRegistry(u.registry_id, u.registry_name, u.reason) for u in items)


def revocation_request(
    request_id: str, attestation: Attestation, scope: Scope, platform_ids: Sequence[str]
) -> holders_pb2.RequestRevocationRequest:
    return holders_pb2.RequestRevocationRequest(
        request_id=request_id,
        attestation=signed_attestation(attestation),
        scope=_enum(scope),
        platform_ids=list(platform_ids),
    )


def revocation_created(resp: holders_pb2.RequestRevocationResponse) -> tuple[str, int]:
    """(revocation id, orders created)."""
    return resp.revocation_id, resp.orders


def revocation_status_request(revocation_id: str) -> holders_pb2.GetRevocationRequest:
    return holders_pb2.GetRevocationRequest(revocation_id=revocation_id)


def revocation_status(resp: holders_pb2.GetRevocationResponse) -> RevocationStatus:
    return RevocationStatus(
        revocation_progress(resp),
        unavailable_registries(resp.unavailable),
        orders_pending=resp.orders_pending,
    )


def revocation_progress(resp: holders_pb2.GetRevocationResponse) -> list[RevocationProgress]:
    return [
        RevocationProgress(
            p.platform_id,
            p.display_name,
            p.category,
            _ORDER_STATES.get(p.state, "?"),
            p.orders,
            p.done,
            p.rejected,
            p.reason,
            tuple(p.order_ids),
            instant(p.deadline),
            instant(p.updated_at),
            p.registry_id,
            p.registry_name,
        )
        for p in resp.platforms
    ]
