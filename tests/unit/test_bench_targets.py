"""The benches mark their figures against the issues' targets where those apply."""

from __future__ import annotations

import pytest

from bench._federation_report import Figures, report
from bench.scale import TARGET_ROWS, publish_goal


def test_the_publish_ratio_is_marked_against_half_the_floor_at_ten_million_rows() -> None:
    assert TARGET_ROWS == 10_000_000
    assert publish_goal(9_551, 12_895, TARGET_ROWS).endswith("target >= 0.50: met")
    assert publish_goal(6_000, 12_895, 10_400_000).endswith("target >= 0.50: MISSED")
    assert publish_goal(6_000, 12_000, TARGET_ROWS).endswith(": met")  # exactly half
    # Below the size the target does not apply: no mark.
    assert publish_goal(1, 12_895, 1_000_000) == ""


def test_the_federation_report_marks_its_targets_and_prints_the_round_trip_floor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fed = Figures(
        report_s=1.0,
        first_event_s=1.5,
        last_ack_s={"bank": 12.0, "net": 9.0},
        lags=[1.0, 2.0],
        queries=[0.010] * 98 + [0.030, 0.030],
        orders_acked=100_000,
        round_trips=[0.002] * 100,
        loop_floor_s={"bank": 6.0, "net": 4.5},
    )
    report(None, fed, full=True)
    out = capsys.readouterr().out
    assert "first event, any platform" in out and "target < 2,000.0 ms: met" in out
    (bank,) = [line for line in out.splitlines() if "last ack at member bank" in line]
    assert bank.endswith("MISSED")
    (net,) = [line for line in out.splitlines() if "last ack at member net" in line]
    assert net.endswith(": met")
    (p99,) = [line for line in out.splitlines() if "holder query p99" in line]
    assert "30.0 ms" in p99 and p99.endswith("MISSED")
    (floor,) = [line for line in out.splitlines() if line.strip().startswith("floor:")]
    assert "p50 2.0 ms, p99 2.0 ms" in floor
    assert "holder query p50 / round trip p50: 5.0" in floor
    assert "single registry" not in floor  # --federation-only: no single registry ran
    (loop,) = [line for line in out.splitlines() if line.strip().startswith("floor, federation")]
    assert "bank 6.0 s of database writes" in loop and "last ack 12.0 s = 0.50" in loop
    assert "net 4.5 s" in loop and "last ack 9.0 s = 0.50" in loop


def test_the_order_states_summary_names_the_backlog_left_at_the_report_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench._order_states import OrderStates, Sample

    states = OrderStates("postgresql://unused", 1.0)
    states.samples = [
        Sample(0.0, {}),
        Sample(10.0, {"pending": 20_000, "delivered": 30_000, "done": 40_000}),
        Sample(11.0, {"pending": 5_000, "delivered": 25_000, "done": 70_000}),
        Sample(14.0, {"done": 99_000, "rejected": 1_000}),
    ]
    states.report_s = 10.5
    states.show(100_000)
    out = capsys.readouterr().out
    assert "10.0s 20,000/30,000/40,000" in out
    # At the last sample before the report's end: 60,000 open, 20,000 of them unsent; acked
    # 40,000 in 10 s, then 60,000 more (rejections count as answered) in the next 4 s.
    assert "60,000 orders not yet acked (20,000 not yet sent)" in out
    assert "acked 4,000/s while the report ran, 15,000/s after" in out
