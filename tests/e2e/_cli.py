"""What the end-to-end tests of `numbind` commands share: the CLI run in-process, and the
numbers and times the carrier commands are given."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from numbind.cli import main

PHONE = "+8613800138001"
OTHER = "+8613900139002"


def iso(when: datetime) -> str:
    return when.isoformat()


async def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run `numbind ARGV` (main calls asyncio.run, so in a thread); (exit code, out, err)."""
    capsys.readouterr()
    rc = await asyncio.to_thread(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err
