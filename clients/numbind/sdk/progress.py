"""Progress reports for long SDK operations, and a tqdm bar for the command line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["Meter", "Progress", "ProgressCallback", "TqdmProgress"]


@dataclass(frozen=True)
class Progress:
    """One report: ``done`` of ``total`` (None when unknown) in ``phase``, at ``rate``/s."""

    phase: str
    done: int
    total: int | None
    rate: float
    unit: str = "row"


ProgressCallback = Callable[[Progress], None]


class Meter:
    """Counts rows for one phase and reports each step to an optional callback."""

    def __init__(
        self,
        phase: str,
        total: int | None,
        callback: ProgressCallback | None,
        unit: str = "row",
    ) -> None:
        self.phase = phase
        self.unit = unit
        self.total = total
        self.done = 0
        self._callback = callback
        self._start = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._start

    def start(self) -> Meter:
        """Report the phase at 0 now, so a bar appears before the first step is done."""
        self._start = time.monotonic()
        self.add(0)
        return self

    def add(self, n: int) -> None:
        self.done += n
        if self._callback is not None:
            elapsed = self.seconds
            rate = self.done / elapsed if elapsed > 0 else 0.0
            self._callback(Progress(self.phase, self.done, self.total, rate, self.unit))


class TqdmProgress:
    """A ProgressCallback drawing tqdm bars on a terminal, and nothing elsewhere.

    One bar per phase, stacked in the order the phases start: phases that overlap (rows
    tokenised while earlier batches are published) each move on their own line. A bar
    redraws at most ten times a second however often it is told. Bars go to stderr so
    that ``--json`` output on stdout stays one clean object.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, progress: Progress) -> None:
        if not self._enabled:
            return
        bar = self._bars.get(progress.phase)
        if bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

            bar = tqdm(
                total=progress.total,
                desc=f"{progress.phase:<8}",
                unit=f" {progress.unit}s",
                unit_scale=True,
                file=self._stream,
                dynamic_ncols=True,
                position=len(self._bars),
                mininterval=0.1,
            )
            self._bars[progress.phase] = bar
        bar.update(progress.done - bar.n)

    def close(self) -> None:
        """Finish every bar (their last state stays on screen)."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
