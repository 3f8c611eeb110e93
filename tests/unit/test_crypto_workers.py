"""The crypto workers replace a pool one of whose workers died, run a call a death cut short
once more, and outlive a stop signalled to the whole process group.

A `ProcessPoolExecutor` with a dead worker refuses every later call (`BrokenProcessPool`):
kept, that made each tokenisation INTERNAL and held a store re-key still until the registry
was restarted by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from numbind.registry.errors import Unavailable
from numbind.registry.workers import CryptoWorkers, in_workers


def square(n: int) -> int:
    return n * n


def worker_pid() -> int:
    return os.getpid()


def dies_once(marker: str) -> int:
    """Dies the first time (no marker yet), answers the next."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return 42


def always_dies() -> int:
    os._exit(1)


@pytest.fixture
def workers() -> Iterator[CryptoWorkers]:
    pool = CryptoWorkers(1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def _kill_and_wait(pid: int, sig: signal.Signals) -> None:
    os.kill(pid, sig)
    for _ in range(500):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def test_a_dead_worker_is_replaced_at_the_next_call(workers: CryptoWorkers) -> None:
    pid = workers.submit(worker_pid).result(timeout=60)
    _kill_and_wait(pid, signal.SIGKILL)
    time.sleep(0.2)  # the pool's manager notices the death and marks itself broken
    assert workers.submit(square, 7).result(timeout=60) == 49  # before: BrokenProcessPool
    assert workers.replaced == 1
    assert workers.submit(worker_pid).result(timeout=60) != pid


async def test_a_call_a_death_cut_short_runs_again(workers: CryptoWorkers, tmp_path: Path) -> None:
    assert await in_workers(workers, dies_once, str(tmp_path / "died")) == 42
    assert workers.replaced == 1


async def test_a_call_that_keeps_killing_its_worker_is_unavailable(
    workers: CryptoWorkers,
) -> None:
    with pytest.raises(Unavailable, match="crypto workers stopped"):
        await in_workers(workers, always_dies)


def test_a_stop_signal_to_the_process_group_is_left_to_the_registry(
    workers: CryptoWorkers,
) -> None:
    # Ctrl-C or systemd signal the whole group; the registry drains its calls and then
    # shuts the pool down. The workers used to die at once, under the calls in flight.
    pid = workers.submit(worker_pid).result(timeout=60)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    assert workers.submit(worker_pid).result(timeout=60) == pid  # the same worker
    assert workers.replaced == 0


_REGISTRY_STANDIN = """
import os, time
from numbind.registry.workers import CryptoWorkers
from tests.unit.test_crypto_workers import worker_pid
if __name__ == "__main__":
    pool = CryptoWorkers(1)
    print(pool.submit(worker_pid).result(), flush=True)
    time.sleep(120)
"""


def test_the_workers_of_a_killed_registry_exit(tmp_path: Path) -> None:
    # An idle worker blocks on its queue, whose pipe it holds both ends of: it used to
    # live on, orphaned, after its registry was killed.
    script = tmp_path / "registry_standin.py"
    script.write_text(_REGISTRY_STANDIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    ) as registry:
        assert registry.stdout is not None
        worker = int(registry.stdout.readline())
        registry.kill()
        registry.wait()
    for _ in range(1000):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} outlived its registry by 20 s")
