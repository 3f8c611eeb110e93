"""The suite's own scheduling (tests/conftest.py): files holding a `slow` test go first, whole
and in collection order, so xdist's file-at-a-time workers start the long ones early."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.conftest import pytest_collection_modifyitems


def _item(path: str, slow: bool) -> Any:
    def marker(name: str) -> object | None:
        return object() if slow and name == "slow" else None

    return SimpleNamespace(path=Path(path), name=f"{path}:{slow}", get_closest_marker=marker)


def test_files_with_a_slow_test_go_first_whole_and_in_order() -> None:
    items = [
        _item("a.py", False),
        _item("b.py", False),
        _item("b.py", True),
        _item("c.py", False),
        _item("d.py", True),
        _item("a.py", False),
    ]
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
    items = [_item("z.py", False), _item("a.py", False), _item("m.py", False)]
    before = list(items)
    pytest_collection_modifyitems(items)
    assert items == before
