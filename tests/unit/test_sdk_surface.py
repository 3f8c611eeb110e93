"""numbind.sdk's public surface: what it exports, its own error codes, no grpc type in
anything a caller catches or reads, and the wire conversions it is built on."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc
import grpc.aio
import numbind.sdk as sdk
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from numbind.sdk import wire
from numbind.sdk.errors import (
    ErrorCode,
    InvalidRequest,
    NumbindClientError,
    QuotaExceeded,
    ServerError,
    from_rpc_error,
    list_positions,
    located,
    offset_positions,
)
from numbind.sdk.log import LogProofError
from numbind.sdk.model import from_us, to_us
from numbind.v1 import common_pb2, platforms_pb2

# A channel is the one grpc object a caller handles: an opaque connection it hands on to
# EventFeed or Tokenizer. It is never an answer, a record or an error.
CHANNEL_PLUMBING = {"secure_channel", "Bundle.channel_credentials"}


def test_the_quick_start_imports_work() -> None:
    from numbind.sdk import CarrierClient, ErrorCode, EventFeed, PlatformClient, Tokenizer

    assert {c.__name__ for c in (CarrierClient, EventFeed, PlatformClient, Tokenizer)} == {
        "CarrierClient",
        "EventFeed",
        "PlatformClient",
        "Tokenizer",
    }
    assert ErrorCode.INVALID_ARGUMENT == "INVALID_ARGUMENT"


def test_all_is_curated_and_complete() -> None:
    assert len(sdk.__all__) == len(set(sdk.__all__))
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None, name
    wanted = {
        "Tokenizer", "PlatformClient", "CarrierClient", "EventFeed",
        "Row", "Record", "BindingKey", "Kind", "AccountRefs", "PublishSummary",
        "WithdrawSummary", "SyncSummary", "FeedEvent", "AckOutcome", "EventKind",
        "LifecycleReport", "Lifecycle", "Scope", "NumberView", "PlatformView",
        "RevocationProgress", "RevocationStatus", "UnavailableRegistry", "TokenResult",
        "RetryPolicy", "Progress", "ProgressCallback",
        "InvalidNumber", "SyncAborted", "ErrorCode", "NumbindClientError", "Reassigned",
    }  # fmt: skip
    assert wanted <= set(sdk.__all__), wanted - set(sdk.__all__)
    # Internals stay internal.
    assert not {"wire", "BindingRpc", "SnapshotStore", "pipeline", "from_rpc_error"} & set(
        sdk.__all__
    )


def _mentions_grpc(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "grpc" in text or "_pb2" in text or "StatusCode" in text


def _public_callables(cls: type) -> list[tuple[str, Any]]:
    out = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in ("__aenter__", "__aiter__"):
            continue
        if isinstance(member, property) and member.fget is not None:
            out.append((name, member.fget))
        elif inspect.isfunction(member) or inspect.ismethod(member):
            out.append((name, member))
    return out


def test_no_grpc_type_in_any_record_return_type_or_error() -> None:
    offenders = []
    for name in sdk.__all__:
        obj = getattr(sdk, name)
        if name in CHANNEL_PLUMBING or not inspect.isclass(obj):
            continue
        if dataclasses.is_dataclass(obj):
            offenders += [
                f"{name}.{f.name}" for f in dataclasses.fields(obj) if _mentions_grpc(f.type)
            ]
        for attr, fn in _public_callables(obj):
            returns = inspect.signature(fn).return_annotation
            if _mentions_grpc(returns) and f"{name}.{attr}" not in CHANNEL_PLUMBING:
                offenders.append(f"{name}.{attr} -> {returns}")
    assert offenders == []


@pytest.mark.parametrize("status", [s for s in grpc.StatusCode if s != grpc.StatusCode.OK])
def test_every_grpc_status_becomes_an_sdk_error_with_an_sdk_code(status: grpc.StatusCode) -> None:
    trailing = grpc.aio.Metadata(("retry-after-ms", "1500"))
    err = from_rpc_error(grpc.aio.AioRpcError(status, grpc.aio.Metadata(), trailing, "why"))
    assert isinstance(err, NumbindClientError) and not isinstance(err, grpc.RpcError)
    assert type(err.code) is ErrorCode and err.code.value == status.name
    assert err.message == "why" and err.retry_after == 1.5
    for value in vars(err).values():
        assert not type(value).__module__.startswith("grpc"), (status, value)
    # CANCELLED reaches an aio client only from the other side (a registry stopping past
    # its grace mid-call, a proxy): retried like UNAVAILABLE, under the same request id.
    retryable = {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED"}
    assert err.retryable == (status.name in retryable)


async def test_a_call_cancelled_by_the_other_side_is_retried() -> None:
    """An ack in flight when a registry stops is CANCELLED by the server; the SDK user must
    see only the retried call's answer (the rolling-restart test found this)."""
    from numbind.sdk.retry import RetryPolicy, call_with_retry

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone"
            )
        return "acked"

    assert await call_with_retry(flaky, RetryPolicy(base=0.001)) == "acked"
    assert calls == 2


def test_the_rekey_errors_are_exported_and_typed_from_the_registrys_metadata() -> None:
    assert {"KeyRotated", "RekeyInProgress"} <= set(sdk.__all__)
    busy = grpc.aio.Metadata(("retry-after-ms", "2500"), ("rekey-progress", "120/400"))
    err = from_rpc_error(
        grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), busy, "re-key")
    )
    assert type(err) is sdk.RekeyInProgress and err.code is ErrorCode.REKEY_IN_PROGRESS
    assert (err.rows_done, err.rows_total, err.retry_after) == (120, 400, 2.5)
    assert not err.retryable  # waited out by sync with progress, not retried blindly
    counting = grpc.aio.Metadata(("rekey-progress", "0/?"))
    err = from_rpc_error(
        grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), counting, "x")
    )
    assert type(err) is sdk.RekeyInProgress and err.rows_total is None
    moved = grpc.aio.Metadata(("store-key-id", "b" * 16))
    err = from_rpc_error(
        grpc.aio.AioRpcError(grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(), moved, "k")
    )
    assert type(err) is sdk.KeyRotated and err.code is ErrorCode.KEY_ROTATED
    assert isinstance(err, sdk.Refused) and err.store_key_id == "b" * 16
    # Placed at a caller's item, each keeps what it carries.
    placed = err.at("binding", 3)
    assert type(placed) is sdk.KeyRotated and placed.store_key_id == "b" * 16
    assert str(placed) == "binding 3: k"
    progress = sdk.RekeyInProgress("busy", 5, 9, retry_after=1.0).at("binding", 2)
    assert (progress.rows_done, progress.rows_total, progress.retry_after) == (5, 9, 1.0)
    aborted = sdk.SyncAborted("too many", withdraw=7, server_bindings=20, limit=5).at("binding", 1)
    assert type(aborted) is sdk.SyncAborted and str(aborted) == "binding 1: too many"
    assert (aborted.withdraw, aborted.server_bindings, aborted.limit) == (7, 20, 5)


def test_a_log_proof_error_placed_at_an_item_keeps_its_failure() -> None:
    # Its constructor is (failure, message): at() and shifted() must not call it as
    # (message, ...) and raise TypeError.
    err = LogProofError("inclusion", "leaf 4 is not in the tree")
    placed = err.at("leaf", 3)
    assert type(placed) is LogProofError and placed.failure == "inclusion"
    assert str(placed) == "leaf 3: log inclusion: leaf 4 is not in the tree"
    assert placed.code is ErrorCode.PROOF_FAILED and placed.reason == err.reason
    moved = placed.shifted(10)
    assert isinstance(moved, LogProofError) and moved.failure == "inclusion"
    assert (moved.item, moved.position) == ("leaf", 13)
    assert str(err.at("leaf", 1, "another tree")) == "leaf 1: log inclusion: another tree"


def test_local_errors_carry_their_own_codes() -> None:
    assert sdk.ProofError("x").code is ErrorCode.PROOF_FAILED
    assert sdk.SyncAborted("x").code is ErrorCode.SYNC_ABORTED
    assert InvalidRequest("x").code is ErrorCode.INVALID_ARGUMENT
    assert QuotaExceeded("x").retryable and not ServerError("x").retryable


# ---- positions ------------------------------------------------------------------------------


def test_a_registry_path_becomes_the_callers_one_based_position() -> None:
    refused = InvalidRequest("bindings[3].bound_at: got 2031-01-01T00:00:00Z, want not future")
    err = located(refused, "bindings", "binding", offset_positions(10_000, 10_000))
    assert type(err) is InvalidRequest and err.code is ErrorCode.INVALID_ARGUMENT
    assert str(err) == "binding 10,004: bound_at: got 2031-01-01T00:00:00Z, want not future"
    assert (err.position, err.item) == (10_004, "binding")
    assert err.reason == "bound_at: got 2031-01-01T00:00:00Z, want not future"


def test_every_path_in_the_message_is_rewritten_and_unknown_ones_are_kept() -> None:
    dup = InvalidRequest("bindings[1]: the same token and account_ref as bindings[0]")
    err = located(dup, "bindings", "binding", list_positions([7, 3]))
    assert str(err) == "binding 3: the same token and account_ref as binding 7"
    # Not about an item of this request, or an index the request did not have: unchanged.
    other = InvalidRequest("request_id: got '', want 1..64 characters")
    assert located(other, "bindings", "binding", offset_positions(0, 5)) is other
    beyond = InvalidRequest("bindings[9].kind: got 0")
    assert located(beyond, "bindings", "binding", offset_positions(0, 5)) is beyond
    # A shift moves an error found inside one batch to its place in the whole input.
    inner = located(InvalidRequest("events[0].kind: got 9"), "events", "event", list_positions([2]))
    assert str(inner.shifted(10)) == "event 12: kind: got 9" and inner.shifted(10).position == 12


# ---- wire conversions -------------------------------------------------------------------


@given(st.datetimes(timezones=st.just(UTC)))
def test_times_cross_the_wire_exactly(moment: datetime) -> None:
    assert from_us(to_us(moment)) == moment
    ts = wire.timestamp(moment)
    assert wire.us_of(ts) == to_us(moment)
    if to_us(moment) != 0:
        assert wire.instant(ts) == moment


def test_time_conversion_edges() -> None:
    cst = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=8)))
    assert wire.instant(wire.timestamp(cst)) == cst
    assert wire.instant(wire.timestamp(cst)).tzinfo is UTC  # type: ignore[union-attr]
    assert wire.instant(Timestamp()) is None  # unset means "none"
    before_epoch = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert to_us(before_epoch) == -1 and wire.instant(wire.timestamp(before_epoch)) == before_epoch
    with pytest.raises(ValueError, match="UTC offset"):
        wire.timestamp(datetime(2024, 1, 1))


def test_a_feed_event_keeps_microseconds_and_names_its_cause() -> None:
    bound = datetime(2024, 5, 1, 8, 0, 0, 123457, tzinfo=UTC)
    pb = platforms_pb2.Event(
        seq=3,
        order_id="o",
        kind=platforms_pb2.EVENT_KIND_REVOKE,
        cause=common_pb2.EVENT_CAUSE_REISSUED,
        binding=wire.binding("k" * 16, (b"t" * 64, b"ref", to_us(bound), 1)),
    )
    event = wire.feed_event(pb, feed=None)  # type: ignore[arg-type]
    assert event.bound_at == bound and event.deadline is None
    assert event.cause is sdk.EventCause.REISSUED and event.kind is sdk.EventKind.REVOKE
    pb.cause = 42  # type: ignore[assignment]  # a cause from a newer registry
    assert wire.feed_event(pb, feed=None).cause is sdk.EventCause.UNSPECIFIED  # type: ignore[arg-type]


def test_a_malformed_answer_is_an_invalid_response() -> None:
    resp = platforms_pb2.CheckReassignedResponse(
        answers=[platforms_pb2.REASSIGNED_ANSWER_REASSIGNED]
    )
    with pytest.raises(ServerError) as err:
        wire.reassigned_answers(resp, 2)
    assert err.value.code is ErrorCode.INVALID_RESPONSE
    answers = [
        platforms_pb2.REASSIGNED_ANSWER_REASSIGNED,
        platforms_pb2.REASSIGNED_ANSWER_NOT_REASSIGNED,
        platforms_pb2.REASSIGNED_ANSWER_NO_DATA,
    ]
    assert wire.reassigned_answers(platforms_pb2.CheckReassignedResponse(answers=answers), 3) == [
        "REASSIGNED",
        "NOT_REASSIGNED",
        "NO_DATA",
    ]
