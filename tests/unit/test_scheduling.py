"""The suite's own scheduling (tests/conftest.py): files holding a `slow` test go first, whole
and in collection order, so xdist's file-at-a-time workers start the long ones early."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.conftest import pytest_collection_modifyitems


def _item(path: str, slow: bool, n: int) -> Any:
    def marker(name: str) -> object | None:
        return object() if slow and name == "slow" else None

    # Named by collection position: two tests of one file stay told apart.
    return SimpleNamespace(path=Path(path), name=f"{path}#{n}", get_closest_marker=marker)


def test_files_with_a_slow_test_go_first_whole_and_in_order() -> None:
    collected = [("a.py", False), ("b.py", False), ("b.py", True), ("c.py", False)]
    collected += [("d.py", True), ("a.py", False)]
    items = [_item(path, slow, n) for n, (path, slow) in enumerate(collected)]
    before = [i.name for i in items]
    pytest_collection_modifyitems(items)
    # b.py moves with its quick test too (a worker takes a file at a time); the rest keep
    # their relative order.
    assert [i.name for i in items] == [
        before[1],
        before[2],
        before[4],
        before[0],
        before[3],
        before[5],
    ]


def test_no_slow_test_leaves_the_order_as_collected() -> None:
    items = [_item(path, False, n) for n, path in enumerate(["z.py", "a.py", "m.py"])]
    before = list(items)
    pytest_collection_modifyitems(items)
    assert items == before
