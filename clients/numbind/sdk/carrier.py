"""The carrier SDK: tokenise, report lifecycle batches, sign holder attestations, and query
or revoke on a holder's behalf (一证通查 / 一键解绑).

The carrier never sends a number: it tokenises with the same VOPRF as platforms, and signs
attestations over the token with its registered Ed25519 key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType

from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.protocol.checkpoint import WitnessPolicy
from numbind.protocol.limits import MAX_LIFECYCLE_EVENTS, instant_problem
from numbind.sdk import reassigned, wire
from numbind.sdk.carrier_model import (
    Attestation,
    LifecycleReport,
    NumberView,
    ReportSummary,
    RevocationProgress,
    RevocationStatus,
    Scope,
)
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import InvalidRequest, NumbindClientError, located, offset_positions
from numbind.sdk.log import LogClient, LogProofError
from numbind.sdk.model import Reassigned, to_us
from numbind.sdk.phone import DEFAULT_REGION
from numbind.sdk.retry import RetryPolicy, attempt_timeout, call_with_retry
from numbind.sdk.tokenizer import Tokenizer, TokenResult
from numbind.v1 import carriers_pb2_grpc, holders_pb2, holders_pb2_grpc

__all__ = ["MAX_REPORT", "CarrierClient"]

MAX_REPORT = MAX_LIFECYCLE_EVENTS


class CarrierClient:
    """One carrier's connection to the registry (async).

    Use as ``async with CarrierClient(bundle) as client``. Calls raise the SDK's typed
    errors (numbind.sdk.errors); UNAVAILABLE and RESOURCE_EXHAUSTED are retried with
    jittered backoff wherever a retry is safe. ``retry`` and ``rpc_timeout`` mean what they
    do for PlatformClient: the policy, and the deadline in seconds of one try of any call
    (a report's; the quicker calls keep a shorter one of their own, 30 s or 60 s, unless
    ``rpc_timeout`` is shorter still).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        region: str = DEFAULT_REGION,
        retry: RetryPolicy | None = None,
        rpc_timeout: float = 120.0,
    ) -> None:
        if bundle.role != "carrier":
            raise ValueError(
                f"bundle {bundle.directory} is a {bundle.role} bundle, not a carrier's"
            )
        self.bundle = bundle
        self._channel = secure_channel(bundle)
        self._signing_key = bundle.attestation_signing_key()
        self._carriers = carriers_pb2_grpc.CarriersStub(self._channel)
        self._holders = holders_pb2_grpc.HoldersStub(self._channel)
        self._retry = retry or RetryPolicy()
        self._timeout = rpc_timeout
        # One retry policy and one bound on a try for every call, tokenisation included.
        self._tokens = Tokenizer(
            self._channel, region=region, retry=self._retry, rpc_timeout=rpc_timeout
        )
        # Its reports are proved logged under the log key (the manifest's, in a federation)
        # at once, before witnesses' next round: cosignatures are what a platform's or an
        # auditor's policy asks for (`numbind log prove` here), not a report's.
        self.log = LogClient.for_bundle(
            self._channel,
            bundle.directory,
            retry=self._retry,
            trust=WitnessPolicy.none(),
            rpc_timeout=rpc_timeout,
        )

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
        tokenised: Callable[[int], None] | None = None,
    ) -> ReportSummary:
        """Report lifecycle events in batches (all-or-nothing per batch, retried safely).

        ``progress(n)`` is called as each batch of n events is reported, ``tokenised(n)``
        as n more numbers are tokenised (a thousand at a time, ahead of the reports).

        A bad event fails its batch before it is sent, named by its 1-based position among
        ``reports`` (``"event 12: effective_at: in the future"``; InvalidNumber for a bad
        number); so does an event the registry refuses. Earlier batches stay reported.
        """
        if not 1 <= batch_size <= MAX_REPORT:
            raise ValueError(f"batch_size: got {batch_size}, want 1..{MAX_REPORT}")
        totals = [0, 0, 0, 0, 0]  # events, applied, superseded, orders, notices
        revocations: list[str] = []
        leaves: list[int] = []
        batch: list[LifecycleReport] = []
        start = 0  # how many events earlier batches held

        async def flush() -> None:
            nonlocal start
            for i, r in enumerate(batch):
                problem = instant_problem(r.effective_at)
                if problem is not None:
                    raise InvalidRequest(
                        f"effective_at: {problem}", item="event", position=start + i + 1
                    )
            e164s = self._tokens.normalise([r.phone for r in batch], start)
            try:
                tokens = await self._tokens.tokenize_e164(e164s, on_done=tokenised)
            except NumbindClientError as exc:
                raise exc.shifted(start) from None
            request = wire.lifecycle_request(uuid.uuid4().hex, batch, tokens)
            try:
                resp = await call_with_retry(
                    lambda: self._carriers.ReportLifecycle(request, timeout=self._timeout),
                    self._retry,
                )
            except NumbindClientError as exc:
                where = offset_positions(start, len(batch))
                raise located(exc, "events", "event", where) from None
            summary = wire.report_summary(resp, len(batch))
            for i, n in enumerate(
                (
                    summary.events,
                    summary.applied,
                    summary.superseded,
                    summary.orders_created,
                    summary.notices_created,
                )
            ):
                totals[i] += n
            revocations.extend(summary.revocation_ids)
            await self._prove_reported(summary.leaf_indices, len(batch), start)
            leaves.extend(summary.leaf_indices)
            if progress:
                progress(len(batch))
            start += len(batch)
            batch.clear()

        for r in reports:
            batch.append(r)
            if len(batch) >= batch_size:
                await flush()
        if batch:
            await flush()
        events, applied, superseded, orders, notices = totals
        return ReportSummary(events, applied, superseded, orders, notices, revocations, leaves)

    async def _prove_reported(self, indices: list[int], events: int, start: int) -> None:
        """Every event of a batch is in a verified checkpoint, opened as this carrier's
        lifecycle entry (LogProofError otherwise: the registry did not log what it applied)."""
        if len(indices) != events:
            raise LogProofError(
                "inclusion", f"events {start + 1}..{start + events}: {len(indices)} leaves"
            )
        for leaf in await self.log.prove(indices):
            entry = leaf.entry or {}
            if entry.get("t") != "lifecycle" or entry.get("carrier") != self.bundle.principal_id:
                raise LogProofError(
                    "opening", f"leaf {leaf.index} does not open as this carrier's event"
                )

    # -- attestations ---------------------------------------------------------------------
    def attest(
        self, token: TokenResult, subject: str, tenure_start: datetime, purpose: int
    ) -> Attestation:
        """Sign a holder attestation for ``token`` (purpose: attestation.Purpose)."""
        data, signature = attestation.issue(
            self._signing_key,
            carrier_id=self.bundle.principal_id,
            token=token.token,
            key_id=token.key_id,
            subject=subject,
            tenure_start_us=to_us(tenure_start),
            purpose=purpose,
        )
        return Attestation(data, signature)

    # -- holder operations ----------------------------------------------------------------
    async def query(
        self, subject: str, numbers: Sequence[tuple[str, datetime]]
    ) -> list[NumberView]:
        """一证通查: every platform bound to each of the subscriber's numbers."""
        tokens = await self._tokens.tokenize([p for p, _ in numbers])

        def attested() -> holders_pb2.QueryBindingsRequest:
            return wire.query_request(
                [
                    self.attest(t, subject, start, attestation.Purpose.QUERY)
                    for t, (_, start) in zip(tokens, numbers, strict=True)
                ]
            )

        # Each attestation is single-use, so each try signs fresh ones: a query only reads,
        # and a registry restarting under it (UNAVAILABLE) no longer reaches the holder.
        try:
            resp: holders_pb2.QueryBindingsResponse = await call_with_retry(
                lambda: self._holders.QueryBindings(
                    attested(), timeout=attempt_timeout(30, self._timeout)
                ),
                self._retry,
            )
        except NumbindClientError as exc:
            where = offset_positions(0, len(numbers))
            raise located(exc, "attestations", "number", where) from None
        return wire.number_views(tokens, resp)

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
        request = wire.revocation_request(
            request_id or uuid.uuid4().hex,
            self.attest(token, subject, tenure_start, attestation.Purpose.REVOKE),
            scope,
            platform_ids,
        )
        # Safe to retry: the request id makes the server answer a retry as the first call.
        resp: holders_pb2.RequestRevocationResponse = await call_with_retry(
            lambda: self._holders.RequestRevocation(
                request, timeout=attempt_timeout(60, self._timeout)
            ),
            self._retry,
        )
        return wire.revocation_created(resp)

    async def revocation(self, revocation_id: str) -> list[RevocationProgress]:
        """Each platform's progress on a revocation this carrier requested."""
        return (await self.revocation_status(revocation_id)).platforms

    async def revocation_status(self, revocation_id: str) -> RevocationStatus:
        """The same, with the federation members the answer lacks (not reached yet, or
        silent past the hub's deadline) and why."""
        request = wire.revocation_status_request(revocation_id)
        resp: holders_pb2.GetRevocationResponse = await call_with_retry(
            lambda: self._holders.GetRevocation(
                request, timeout=attempt_timeout(30, self._timeout)
            ),
            self._retry,
        )
        return wire.revocation_status(resp)

    async def check_reassigned(self, queries: Sequence[tuple[str, datetime]]) -> list[Reassigned]:
        """REASSIGNED / NOT_REASSIGNED / NO_DATA per (phone, since), in order."""
        answers = await reassigned.check_reassigned(
            self._channel, self._tokens, queries, self._retry, self._timeout
        )
        return [answer for _, _, answer in answers]
