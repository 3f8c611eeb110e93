"""A platform's feed consumer, run as its own process by the fault suite.

    python tests/faults/_consumer.py BUNDLE_DIR RECEIPTS [HANG_AT]

Follows the feed with the SDK (resuming from the bundle's cursor file), writes each event
it receives to RECEIPTS (flushed) before acking it, and writes "done" once caught up. With
HANG_AT it stops for good after receiving its HANG_AT-th event, before acking it: the
test kill -9s it there, between receiving and acking.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from numbind.sdk import AckOutcome, Bundle, PlatformClient


def _note(receipts: Path, line: str) -> None:
    with open(receipts, "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


async def main(bundle_dir: str, receipts: Path, hang_at: int) -> None:
    received = 0
    async with PlatformClient(Bundle.load(bundle_dir)) as client:
        async for event in client.events(follow=False, heartbeat_seconds=1):
            _note(receipts, f"recv {event.order_id} {event.account_ref.hex()}")
            received += 1
            if received == hang_at:
                _note(receipts, "hang")
                await asyncio.sleep(3600)
            await event.ack(AckOutcome.UNBOUND)
    _note(receipts, "done")


if __name__ == "__main__":
    hang = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), hang))
