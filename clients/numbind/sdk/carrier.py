"""The carrier SDK: tokenise, report lifecycle batches, sign holder attestations, and query
or revoke on a holder's behalf (一证通查 / 一键解绑).

The carrier never sends a number: it tokenises with the same VOPRF as platforms, and signs
attestations over the token with its registered Ed25519 key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from types import TracebackType

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.protocol.limits import MAX_LIFECYCLE_EVENTS
from numbind.sdk import reassigned
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import from_rpc_error
from numbind.sdk.platform import to_us as platform_to_us
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.sdk.tokenizer import Tokenizer, TokenResult
from numbind.v1 import (
    carriers_pb2,
    carriers_pb2_grpc,
    common_pb2,
    holders_pb2,
    holders_pb2_grpc,
    platforms_pb2_grpc,
)

MAX_REPORT = MAX_LIFECYCLE_EVENTS


class Lifecycle(IntEnum):
    ISSUED = 1
    DEACTIVATED = 2
    REISSUED = 3
    PORTED_OUT = 4
    PORTED_IN = 5


class Scope(IntEnum):
    ALL_PRE_TENURE = 1
    PLATFORMS = 2
    ALL = 3


ORDER_STATES = {1: "PENDING", 2: "DELIVERED", 3: "DONE", 4: "REJECTED", 5: "OVERDUE"}


def to_us(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("times must carry a UTC offset")
    return platform_to_us(when)  # exact integer microseconds, not via a float


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(to_us(when))
    return ts


def _dt(ts: Timestamp) -> datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=datetime.now().astimezone().tzinfo).astimezone()


@dataclass(frozen=True)
class LifecycleReport:
    phone: str
    event: Lifecycle
    effective_at: datetime


@dataclass(frozen=True)
class ReportSummary:
    events: int
    applied: int
    superseded: int
    orders_created: int
    notices_created: int
    revocation_ids: list[str]


@dataclass(frozen=True)
class PlatformView:
    platform_id: str
    display_name: str
    category: str
    pre_tenure: bool
    active_count: int
    earliest: datetime | None
    latest: datetime | None
    open_revocation: str
    open_state: str


@dataclass(frozen=True)
class NumberView:
    e164: str
    tenure_start: datetime | None
    platforms: list[PlatformView]


@dataclass(frozen=True)
class Progress:
    platform_id: str
    display_name: str
    category: str
    state: str
    orders: int
    done: int
    rejected: int
    reason: str


class CarrierClient:
    """One carrier's connection to the registry (async)."""

    def __init__(self, bundle: Bundle, *, region: str = "CN", retry: RetryPolicy | None = None):
        if bundle.role != "carrier":
            raise ValueError(
                f"bundle {bundle.directory} is a {bundle.role} bundle, not a carrier's"
            )
        self.bundle = bundle
        self._channel = secure_channel(bundle)
        self._signing_key = bundle.attestation_signing_key()
        self._carriers = carriers_pb2_grpc.CarriersStub(self._channel)
        self._holders = holders_pb2_grpc.HoldersStub(self._channel)
        self._platforms = platforms_pb2_grpc.PlatformsStub(self._channel)
        self._retry = retry or RetryPolicy()
        # One retry policy for every call, tokenisation included.
        self._tokens = Tokenizer(self._channel, region=region, retry=self._retry)

    async def __aenter__(self) -> CarrierClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._tokens.close()
        await self._channel.close()

    async def tokenize(self, phones: Sequence[str]) -> list[TokenResult]:
        return await self._tokens.tokenize(phones)

    # -- lifecycle ------------------------------------------------------------------------
    async def report(
        self,
        reports: Iterable[LifecycleReport],
        *,
        batch_size: int = MAX_REPORT,
        progress: Callable[[int], None] | None = None,
    ) -> ReportSummary:
        """Report lifecycle events in batches (all-or-nothing per batch, retried safely)."""
        totals = [0, 0, 0, 0, 0]
        revocations: list[str] = []
        batch: list[LifecycleReport] = []

        async def flush() -> None:
            tokens = await self._tokens.tokenize([r.phone for r in batch])
            request = carriers_pb2.ReportLifecycleRequest(
                request_id=uuid.uuid4().hex,
                events=[
                    carriers_pb2.LifecycleEvent(
                        token=common_pb2.Token(key_id=t.key_id, value=t.token),
                        kind=int(r.event),  # type: ignore[arg-type]
                        effective_at=_ts(r.effective_at),
                    )
                    for r, t in zip(batch, tokens, strict=True)
                ],
            )
            resp = await call_with_retry(
                lambda: self._carriers.ReportLifecycle(request, timeout=120), self._retry
            )
            for i, v in enumerate(
                (
                    len(batch),
                    resp.applied,
                    resp.superseded,
                    resp.orders_created,
                    resp.notices_created,
                )
            ):
                totals[i] += v
            if resp.revocation_id:
                revocations.append(resp.revocation_id)
            if progress:
                progress(len(batch))
            batch.clear()

        for r in reports:
            batch.append(r)
            if len(batch) >= batch_size:
                await flush()
        if batch:
            await flush()
        return ReportSummary(
            events=totals[0],
            applied=totals[1],
            superseded=totals[2],
            orders_created=totals[3],
            notices_created=totals[4],
            revocation_ids=revocations,
        )

    # -- attestations ---------------------------------------------------------------------
    def attest(
        self, token: TokenResult, subject: str, tenure_start: datetime, purpose: int
    ) -> holders_pb2.SignedAttestation:
        data, signature = attestation.issue(
            self._signing_key,
            carrier_id=self.bundle.principal_id,
            token=token.token,
            key_id=token.key_id,
            subject=subject,
            tenure_start_us=to_us(tenure_start),
            purpose=purpose,
        )
        return holders_pb2.SignedAttestation(attestation=data, signature=signature)

    # -- holder operations ----------------------------------------------------------------
    async def query(
        self, subject: str, numbers: Sequence[tuple[str, datetime]]
    ) -> list[NumberView]:
        """一证通查: every platform bound to each of the subscriber's numbers."""
        tokens = await self._tokens.tokenize([p for p, _ in numbers])
        request = holders_pb2.QueryBindingsRequest(
            attestations=[
                self.attest(t, subject, start, attestation.Purpose.QUERY)
                for t, (_, start) in zip(tokens, numbers, strict=True)
            ]
        )
        # Not retried: each attestation is single-use, a retry needs fresh ones.
        resp = await self._call(self._holders.QueryBindings, request)
        out = []
        for t, n in zip(tokens, resp.numbers, strict=True):
            out.append(
                NumberView(
                    t.e164,
                    _dt(n.tenure_start),
                    [
                        PlatformView(
                            p.platform_id,
                            p.display_name,
                            p.category,
                            p.tenure_class == holders_pb2.TENURE_CLASS_PRE_TENURE,
                            p.active_count,
                            _dt(p.earliest_bound_at),
                            _dt(p.latest_bound_at),
                            p.open_revocation.revocation_id,
                            ORDER_STATES.get(p.open_revocation.state, ""),
                        )
                        for p in n.platforms
                    ],
                )
            )
        return out

    async def revoke(
        self,
        subject: str,
        phone: str,
        tenure_start: datetime,
        scope: Scope,
        platform_ids: Sequence[str] = (),
        *,
        request_id: str | None = None,
    ) -> tuple[str, int]:
        """一键解绑: revoke bindings in scope; returns (revocation id, orders created)."""
        (token,) = await self._tokens.tokenize([phone])
        request = holders_pb2.RequestRevocationRequest(
            request_id=request_id or uuid.uuid4().hex,
            attestation=self.attest(token, subject, tenure_start, attestation.Purpose.REVOKE),
            scope=int(scope),  # type: ignore[arg-type]
            platform_ids=list(platform_ids),
        )
        # Safe to retry: the request id makes the server answer a retry as the first call.
        resp = await call_with_retry(
            lambda: self._holders.RequestRevocation(request, timeout=60), self._retry
        )
        return resp.revocation_id, resp.orders

    async def revocation(self, revocation_id: str) -> list[Progress]:
        resp = await call_with_retry(
            lambda: self._holders.GetRevocation(
                holders_pb2.GetRevocationRequest(revocation_id=revocation_id), timeout=30
            ),
            self._retry,
        )
        return [
            Progress(
                p.platform_id,
                p.display_name,
                p.category,
                ORDER_STATES.get(p.state, "?"),
                p.orders,
                p.done,
                p.rejected,
                p.reason,
            )
            for p in resp.platforms
        ]

    async def check_reassigned(self, queries: Sequence[tuple[str, datetime]]) -> list[str]:
        """REASSIGNED / NOT_REASSIGNED / NO_DATA per (phone, since), in order."""
        answers = await reassigned.check_reassigned(
            self._channel, self._tokens, queries, self._retry
        )
        return [answer for _, _, answer in answers]

    async def _call(
        self, fn: Callable[..., object], request: object
    ) -> holders_pb2.QueryBindingsResponse:
        try:
            return await fn(request, timeout=30)  # type: ignore[misc,no-any-return]
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
