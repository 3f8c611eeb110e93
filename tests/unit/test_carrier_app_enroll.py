"""`python -m numbind.carrier_app --enroll FILE`: subscribers from a CSV, so a first run of
the app as the README shows it has someone who can sign in."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.carrier_app.enroll import enroll_file
from numbind.carrier_app.store import Store

SECRET = b"s" * 32


def test_rows_are_enrolled_with_the_regions_rules(tmp_path: Path) -> None:
    rows = tmp_path / "subscribers.csv"
    rows.write_text(
        "phone,tenure_start,id_number\n"
        "13800138000,2026-01-01,11010519880808123X\n"
        "+86 139 1234 5678,2018-12-01T00:00:00+08:00,11010519880808123x\n"
    )
    store = Store(tmp_path / "app.db", SECRET)
    assert enroll_file(store, rows, "CN") == 2
    # Both under one subscriber (the ID's X in either case), each with its tenure.
    challenge = store.start_sign_in("+8613800138000", "08123X")
    subject = store.verify_code(challenge.id, challenge.code)
    numbers = {n.e164: n.tenure_start for n in store.numbers(subject)}
    assert sorted(numbers) == ["+8613800138000", "+8613912345678"]
    assert numbers["+8613800138000"].isoformat() == "2025-12-31T16:00:00+00:00"  # +08:00 day


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("id_number,phone\n", "line 1: want the header id_number,phone,tenure_start"),
        ("id_number,phone,tenure_start\n1,13800138000,2026-01-01\n", "line 2: id_number"),
        (
            "id_number,phone,tenure_start\n11010519880808123X,12345,2026-01-01\n",
            "line 2: phone: not a valid number",
        ),
        (
            "id_number,phone,tenure_start\n11010519880808123X,13800138000,yesterday\n",
            "line 2: not a date",
        ),
    ],
)
def test_a_bad_row_is_named_by_its_line_never_by_its_number(
    tmp_path: Path, text: str, want: str
) -> None:
    rows = tmp_path / "subscribers.csv"
    rows.write_text(text)
    with pytest.raises(ValueError) as err:
        enroll_file(Store(tmp_path / "app.db", SECRET), rows, "CN")
    assert want in str(err.value) and "12345" not in str(err.value), err.value
