"""Against a real registry: batched SDK calls name a bad item by its 1-based position in
everything the caller passed, and PlatformClient.check_reassigned answers as the carrier's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry
from numbind.sdk import (
    CarrierClient,
    ErrorCode,
    InvalidNumber,
    InvalidRequest,
    Kind,
    Lifecycle,
    LifecycleReport,
    PermissionDenied,
    PlatformClient,
    Reassigned,
    Record,
    Row,
    Tokenizer,
    secure_channel,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NUMBERS = [f"+86138001380{i:02d}" for i in range(10)]


def _at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


async def test_publish_names_the_refused_record_across_batches(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle, batch_size=3, in_flight=1) as client:
        key_id = await client.key_id()
        tokens = await _tokens(bundle, NUMBERS[:6])
        records = [Record(t, key_id, b"ref", T0, Kind.LOGIN) for t in tokens]
        # Record 5 is under a key the registry never had: its own batch (one key a batch).
        records[4] = Record(tokens[4], "00000000000000ff", b"ref", T0, Kind.LOGIN)
        with pytest.raises(InvalidRequest) as err:
            await client.publish_records(records)
        assert err.value.position == 5 and err.value.item == "binding"
        assert str(err.value).startswith("binding 5: token.key_id: 00000000000000ff")
        assert err.value.code is ErrorCode.INVALID_ARGUMENT
        # One batch at a time: the batches before it were published, nothing after it.
        assert sum(b.count for b in (await client.digest(0)).values()) == 4


async def test_publish_names_a_bad_number_by_its_row(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle, batch_size=2) as client:
        rows = [Row(n, f"user-{i}", T0) for i, n in enumerate(NUMBERS[:4])]
        rows.insert(4, Row("12345", "user-x", T0))
        with pytest.raises(InvalidNumber) as err:
            await client.publish(rows)
        assert err.value.position == 5 and str(err.value).startswith("number 5: ")
        assert "12345" not in str(err.value)


async def test_report_names_the_refused_event_across_batches(registry: RunningRegistry) -> None:
    cm, cu = registry.add_carrier("cm"), registry.add_carrier("cu")
    async with CarrierClient(cu) as other:
        await other.report([LifecycleReport(NUMBERS[9], Lifecycle.ISSUED, _at(2020, 1, 1))])
    async with CarrierClient(cm) as carrier:
        events = [LifecycleReport(n, Lifecycle.ISSUED, _at(2021, 1, 1)) for n in NUMBERS[:4]]
        events.insert(2, LifecycleReport(NUMBERS[9], Lifecycle.DEACTIVATED, _at(2022, 1, 1)))
        with pytest.raises(PermissionDenied) as err:
            await carrier.report(events, batch_size=2)
        assert (err.value.position, err.value.item) == (3, "event")
        assert str(err.value).startswith("event 3: token: carrier cm does not currently serve")

        late = [LifecycleReport(n, Lifecycle.ISSUED, _at(2021, 1, 1)) for n in NUMBERS[4:7]]
        future = datetime.now(UTC) + timedelta(days=1)
        late.append(LifecycleReport(NUMBERS[7], Lifecycle.ISSUED, future))
        with pytest.raises(InvalidRequest) as bad_time:
            await carrier.report(late, batch_size=3)
        assert str(bad_time.value) == "event 4: effective_at: in the future"

        with pytest.raises(InvalidNumber) as bad_number:
            await carrier.report(
                [*late[:3], LifecycleReport("12345", Lifecycle.ISSUED, T0)], batch_size=2
            )
        assert bad_number.value.position == 4


async def test_both_clients_answer_reassigned_since_alike(registry: RunningRegistry) -> None:
    platform, cm = registry.add_platform("acme"), registry.add_carrier("cm")
    async with CarrierClient(cm) as carrier:
        await carrier.report(
            [
                LifecycleReport(NUMBERS[0], Lifecycle.ISSUED, _at(2020, 1, 1)),
                LifecycleReport(NUMBERS[0], Lifecycle.REISSUED, _at(2024, 6, 1)),
                LifecycleReport(NUMBERS[1], Lifecycle.ISSUED, _at(2019, 1, 1)),
            ]
        )
        queries = [(NUMBERS[0], T0), (NUMBERS[0], _at(2024, 7, 1)), (NUMBERS[1], T0)]
        queries.append((NUMBERS[2], T0))
        from_carrier = await carrier.check_reassigned(queries)
    async with PlatformClient(platform) as client:
        answers = await client.check_reassigned(queries)
        assert (
            answers
            == from_carrier
            == [
                Reassigned.REASSIGNED,
                Reassigned.NOT_REASSIGNED,
                Reassigned.NOT_REASSIGNED,
                Reassigned.NO_DATA,
            ]
        )
        assert answers[0] == "REASSIGNED"  # a StrEnum: equal to its name
        with pytest.raises(InvalidRequest) as err:
            await client.check_reassigned([(NUMBERS[0], T0), (NUMBERS[1], datetime(2024, 1, 1))])
        assert str(err.value).startswith("query 2: since: no UTC offset")
        assert err.value.position == 2


async def _tokens(bundle: Bundle, numbers: list[str]) -> list[bytes]:
    async with secure_channel(bundle) as channel:
        tokenizer = Tokenizer(channel)
        try:
            return [t.token for t in await tokenizer.tokenize(numbers)]
        finally:
            tokenizer.close()
