"""A page of feed events on the wire (api.feed.events_to_wire, built in place for speed)
is the message the field-by-field construction gives, byte for byte, whatever is unset."""

from __future__ import annotations

from numbind.registry.api.convert import ts_from_us
from numbind.registry.api.feed import events_to_wire
from numbind.registry.storage.feed import FeedItem
from numbind.v1 import common_pb2, platforms_pb2

T = 1_700_000_000_000_000


def _reference(item: FeedItem) -> platforms_pb2.Event:
    return platforms_pb2.Event(
        seq=item.seq,
        order_id=item.order_id,
        kind=item.kind,  # type: ignore[arg-type]
        cause=item.cause,  # type: ignore[arg-type]
        binding=common_pb2.Binding(
            token=common_pb2.Token(key_id=item.key_id, value=item.token),
            account_ref=item.account_ref,
            bound_at=ts_from_us(item.bound_us),
            kind=item.binding_kind,  # type: ignore[arg-type]
        ),
        tenure_start=ts_from_us(item.tenure_start_us) if item.tenure_start_us else None,
        created_at=ts_from_us(item.created_us),
        deadline=ts_from_us(item.deadline_us),
        revocation_id=item.revocation_id,
        leaf_index=item.leaf_index,
    )


ITEMS = [
    FeedItem(
        7,
        3,
        "0b9c7c1e-1a0b-4a8e-9f61-123456789abc",
        1,
        2,
        1,
        "rid",
        T,
        T + 1,
        T + 2,
        "0123456789abcdef",
        b"t" * 32,
        b"acct",
        T - 5,
        1,
        42,
    ),
    FeedItem(8, 4, "o", 2, 1, 0, "", None, T, T, "k", b"t", b"", T, 2, None),  # no leaf, tenure
    FeedItem(0, 0, "", 0, 0, 0, "", 0, 0, 0, "", b"", b"", 0, 0, 0),  # every field zero
]


def test_events_on_the_wire_are_the_reference_bytes() -> None:
    want = platforms_pb2.StreamEventsResponse(
        events=platforms_pb2.EventBatch(events=[_reference(i) for i in ITEMS])
    )
    got = events_to_wire(ITEMS)
    assert got == want
    assert got.SerializeToString() == want.SerializeToString()
    for item in ITEMS:
        one = events_to_wire([item]).events.events[0]
        assert one.HasField("leaf_index") == (item.leaf_index is not None)
        assert one.HasField("tenure_start") == bool(item.tenure_start_us)
        assert one.HasField("created_at") and one.binding.HasField("bound_at")
