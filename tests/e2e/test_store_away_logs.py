"""The store away is an expected condition for the registry's background loops: a one-line
warning each time they meet it (storage has said why), not an ERROR with a traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from numbind.registry.errors import Unavailable
from numbind.registry.testing import RunningRegistry


def _away(*_: Any, **__: Any) -> Any:
    raise Unavailable("storage: the database is unavailable, retry later")


async def test_the_checkpoint_publisher_warns_in_one_line(
    registry: RunningRegistry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = registry.registry.log
    monkeypatch.setattr(log, "publish_due", _away)
    stopping = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="numbind.registry.services.log"):
        task = asyncio.ensure_future(log.run(stopping, 0.05))
        await asyncio.sleep(0.3)
        stopping.set()
        await task
    said = [r for r in caplog.records if r.name == "numbind.registry.services.log"]
    assert said and all(r.levelno == logging.WARNING and not r.exc_info for r in said)
    assert "database is unavailable" in said[0].getMessage()


async def test_the_local_applier_warns_in_one_line(
    registry: RunningRegistry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    applier = registry.registry.lifecycle.applier
    assert applier is not None
    monkeypatch.setattr(registry.registry.db, "run", _away)
    stopping = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="numbind.registry.services.local_apply"):
        task = asyncio.ensure_future(applier.run(stopping))
        await asyncio.sleep(0.3)
        stopping.set()
        await asyncio.wait_for(task, 5)
    said = [r for r in caplog.records if r.name == "numbind.registry.services.local_apply"]
    assert said and all(r.levelno == logging.WARNING and not r.exc_info for r in said)
