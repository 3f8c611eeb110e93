"""The README's "Use the SDK" example runs as written against a real registry."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from numbind.registry.testing import RunningRegistry
from numbind.sdk import (
    CarrierClient,
    EventFeed,
    Kind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Row,
    secure_channel,
)
from numbind.sdk.feed import CURSOR_FILE

README = Path(__file__).resolve().parents[2] / "README.md"


def sdk_example() -> str:
    """The first ```python block under the README's "## Use the SDK" heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Use the SDK\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert match is not None, "no python block under '## Use the SDK'"
    return match.group(1)


def _at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_the_example_is_a_short_whole_program() -> None:
    code = sdk_example()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 40, len(lines)
    for call in ("client.publish(", "client.sync(", "client.events(", ".ack(", "check_reassigned("):
        assert call in code, call
    compile(code, "README.md", "exec")  # a syntax error fails here, named as the README


async def test_the_readme_example_runs_as_written(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    cm = registry.add_carrier("cm")
    # Yesterday: the platform published user-42's binding; since then the number was
    # deactivated and sold again, so the feed holds a notice and a revocation order.
    async with PlatformClient(bundle) as client:
        await client.publish([Row("13800138000", "user-42", _at(2024, 3, 1), Kind.LOGIN)])
    async with CarrierClient(cm) as carrier:
        reported = await carrier.report(
            [
                LifecycleReport("13800138000", Lifecycle.ISSUED, _at(2020, 1, 1)),
                LifecycleReport("13912345678", Lifecycle.ISSUED, _at(2019, 1, 1)),
                LifecycleReport("13800138000", Lifecycle.DEACTIVATED, _at(2024, 6, 1)),
                LifecycleReport("13800138000", Lifecycle.REISSUED, _at(2024, 9, 1)),
            ]
        )
    assert (reported.orders_created, reported.notices_created) == (1, 1)
    capsys.readouterr()

    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(sdk_example(), str(README), "exec"), namespace)
    await namespace["main"](bundle.directory)

    assert capsys.readouterr().out.splitlines() == [
        "sync: 1 published, 0 withdrawn",
        "deactivated: ask user-42 to move to another number",
        "revoked: user-42 may no longer sign in with that number",
        "reassigned since 2024-03-01 -> REASSIGNED, NOT_REASSIGNED",
    ]
    # Every event was acked: the holder's view shows the revocation done, and the feed,
    # resumed from the cursor the example saved, has nothing left.
    async with CarrierClient(cm) as carrier:
        (progress,) = await carrier.revocation(reported.revocation_ids[0])
    assert (progress.platform_id, progress.state) == ("acme", "DONE")
    assert progress.done == progress.orders > 0
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, bundle.directory / CURSOR_FILE)
        assert feed.acked_through == 2
        assert [e async for e in feed.events(follow=False)] == []
