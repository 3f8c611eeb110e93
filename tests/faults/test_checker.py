"""The shared checker itself: each class of event is counted where it belongs."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults import checker


def test_each_owed_event_received_once_is_delivered() -> None:
    row = checker.classify("c", ["a", "b", "c"], ["c", "a", "b"])
    assert (row.expected, row.delivered, row.redelivered, row.lost, row.unexpected) == (
        3,
        3,
        0,
        0,
        0,
    )
    assert row.ok


def test_a_second_receipt_is_a_redelivery_not_a_failure() -> None:
    row = checker.classify("c", ["a", "b"], ["a", "b", "a", "a"])
    assert (row.delivered, row.redelivered, row.lost, row.unexpected) == (2, 2, 0, 0)
    assert row.ok


def test_an_owed_event_never_received_is_lost() -> None:
    row = checker.classify("c", ["a", "b", "c"], ["a", "a"])
    assert (row.delivered, row.redelivered, row.lost) == (1, 1, 2)
    assert not row.ok


def test_every_receipt_of_an_unowed_event_is_unexpected() -> None:
    row = checker.classify("c", ["a"], ["a", "x", "x", "y"])
    assert (row.delivered, row.lost, row.unexpected) == (1, 0, 3)
    assert not row.ok


def test_expected_is_a_set_and_key_extracts_the_dedup_key() -> None:
    received = [{"order": 1}, {"order": 2}, {"order": 1}]
    row = checker.classify("c", [1, 2, 2], received, key=lambda e: e["order"])
    assert (row.expected, row.delivered, row.redelivered) == (2, 2, 1)


def test_check_records_the_row_and_fails_on_loss() -> None:
    saved = list(checker.ROWS)
    try:
        checker.check("unit: clean", ["a"], ["a"])
        with pytest.raises(AssertionError, match="1 lost"):
            checker.check("unit: lossy", ["a", "b"], ["a"])
        cases = [r.case for r in checker.ROWS]
        assert "unit: clean" in cases and "unit: lossy" in cases
        checker.check("unit: clean", ["a"], ["a", "a"])
        assert [r.redelivered for r in checker.ROWS if r.case == "unit: clean"] == [1]
    finally:
        checker.ROWS[:] = saved


def test_summary_table_lists_each_case_and_the_bad_input_tally() -> None:
    rows = [checker.classify("kill -9 registry", ["a", "b"], ["a", "b", "b"])]
    bad = checker.record_bad_inputs("fuzz", 10, Counter(INVALID_ARGUMENT=9, INTERNAL=1))
    checker.BAD_INPUT_ROWS.remove(bad)
    lines = checker.summary_lines(rows, [bad])
    assert lines[0].split() == [
        "case",
        "expected",
        "delivered",
        "redelivered",
        "lost",
        "unexpected",
    ]
    assert lines[1].split()[-5:] == ["2", "2", "1", "0", "0"]
    assert "bad inputs 10, INTERNAL/UNKNOWN 1" in lines[2]
    assert "INTERNAL 1" in lines[3] and "INVALID_ARGUMENT 9" in lines[3]
