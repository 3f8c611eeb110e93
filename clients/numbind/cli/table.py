"""Aligned text tables for the terminal: a heading row, numbers right-aligned with
thousands separators, text left-aligned."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["render"]

Cell = str | int | None


def render(headings: Sequence[str], rows: Sequence[Sequence[Cell]], gap: int = 3) -> str:
    """The table as lines joined by newlines, no trailing spaces. A column is right-aligned
    when every one of its cells is a number (or empty); None prints as "-"."""
    cells = [[_text(c) for c in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headings))
    ]
    widths = [
        max([len(headings[i]), *(len(row[i]) for row in cells)]) for i in range(len(headings))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return (" " * gap).join(parts).rstrip()

    return "\n".join([line(headings), *(line(row) for row in cells)])


def _text(cell: Cell) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, int):
        return f"{cell:,}"
    return cell
