"""The benches mark their figures against the issues' targets where those apply."""

from __future__ import annotations

from bench.scale import TARGET_ROWS, publish_goal


def test_the_publish_ratio_is_marked_against_half_the_floor_at_ten_million_rows() -> None:
    assert TARGET_ROWS == 10_000_000
    assert publish_goal(9_551, 12_895, TARGET_ROWS).endswith("target >= 0.50: met")
    assert publish_goal(6_000, 12_895, 10_400_000).endswith("target >= 0.50: MISSED")
    assert publish_goal(6_000, 12_000, TARGET_ROWS).endswith(": met")  # exactly half
    # Below the size the target does not apply: no mark.
    assert publish_goal(1, 12_895, 1_000_000) == ""
