"""Per-RPC request sizes (numbind.protocol.limits.REQUEST_BYTES) are sized to the largest
legal request: every maximal request fits, and no limit is more than twice it needs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol import limits
from numbind.protocol.attestation import MAX_ATTESTATION_BYTES
from numbind.v1 import carriers_pb2, common_pb2, holders_pb2, platforms_pb2, tokens_pb2

RID = "r" * 128
# The largest timestamp on the wire: the future skew's end, with every nanosecond digit.
LATEST = Timestamp(seconds=4_102_444_800, nanos=999_999_000)


def _token() -> common_pb2.Token:
    return common_pb2.Token(key_id="f" * 16, value=b"\xff" * limits.TOKEN_BYTES)


def _binding() -> common_pb2.Binding:
    return common_pb2.Binding(
        token=_token(),
        account_ref=b"\xff" * limits.MAX_ACCOUNT_REF,
        bound_at=LATEST,
        kind=max(common_pb2.BindingKind.values()),
    )


def _attestation() -> holders_pb2.SignedAttestation:
    return holders_pb2.SignedAttestation(
        attestation=b"\xff" * MAX_ATTESTATION_BYTES, signature=b"\xff" * 64
    )


MAXIMAL: dict[str, Callable[[], Message]] = {
    "/numbind.v1.Tokens/Evaluate": lambda: tokens_pb2.EvaluateRequest(
        key_id="f" * 16, blinded_elements=[b"\xff" * 32] * limits.MAX_EVALUATE
    ),
    "/numbind.v1.Platforms/PublishBindings": lambda: platforms_pb2.PublishBindingsRequest(
        request_id=RID, bindings=[_binding()] * limits.MAX_BINDINGS
    ),
    "/numbind.v1.Platforms/WithdrawBindings": lambda: platforms_pb2.WithdrawBindingsRequest(
        request_id=RID,
        bindings=[
            common_pb2.BindingKey(token=_token(), account_ref=b"\xff" * limits.MAX_ACCOUNT_REF)
        ]
        * limits.MAX_BINDINGS,
    ),
    "/numbind.v1.Platforms/CheckReassigned": lambda: platforms_pb2.CheckReassignedRequest(
        queries=[platforms_pb2.ReassignedQuery(token=_token(), since=LATEST)]
        * limits.MAX_REASSIGNED_QUERIES
    ),
    "/numbind.v1.Platforms/AckEvents": lambda: platforms_pb2.AckEventsRequest(
        request_id=RID,
        acks=[
            platforms_pb2.Ack(
                order_id="f" * 36,
                outcome=max(platforms_pb2.AckOutcome.values()),
                reason="\U0001f600" * limits.MAX_REASON,  # 4 bytes a character
            )
        ]
        * limits.MAX_ACKS,
    ),
    "/numbind.v1.Carriers/ReportLifecycle": lambda: carriers_pb2.ReportLifecycleRequest(
        request_id=RID,
        events=[
            carriers_pb2.LifecycleEvent(
                token=_token(),
                kind=max(carriers_pb2.LifecycleKind.values()),
                effective_at=LATEST,
            )
        ]
        * limits.MAX_LIFECYCLE_EVENTS,
    ),
    "/numbind.v1.Holders/QueryBindings": lambda: holders_pb2.QueryBindingsRequest(
        attestations=[_attestation()] * limits.MAX_HOLDER_NUMBERS
    ),
    "/numbind.v1.Holders/RequestRevocation": lambda: holders_pb2.RequestRevocationRequest(
        request_id=RID,
        attestation=_attestation(),
        scope=max(holders_pb2.RevocationScope.values()),
        platform_ids=["p" * 63] * limits.MAX_HOLDER_PLATFORMS,
    ),
}


@pytest.mark.parametrize("method", sorted(limits.REQUEST_BYTES))
def test_each_limit_fits_the_largest_legal_request_and_little_more(method: str) -> None:
    size = MAXIMAL[method]().ByteSize()
    limit = limits.request_limit(method)
    assert size <= limit, (method, size, limit)
    assert limit < 2 * size, (method, size, limit)


def test_the_server_accepts_nothing_bigger_than_the_largest_legal_request() -> None:
    assert set(MAXIMAL) == set(limits.REQUEST_BYTES)
    assert max(limits.REQUEST_BYTES.values()) == limits.MAX_RECEIVE_BYTES
    # The 60 MB PublishBindings is refused by gRPC itself, before it is buffered.
    assert limits.MAX_RECEIVE_BYTES < 60_000_000
    assert limits.request_limit("/numbind.v1.Tokens/GetKeys") == limits.DEFAULT_REQUEST_BYTES
