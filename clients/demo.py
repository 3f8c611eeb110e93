"""`make demo`: a fresh registry with its embedded SQLite store, sample principals, and a
platform calling it. Runs until Ctrl-C, then stops everything.

Everything lives in ./.demo (wiped at start), so a demo never touches real data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from clients.bundle import Bundle, secure_channel
from clients.tokenizer import Tokenizer

ROOT = Path.cwd()
DEMO = Path(os.environ.get("NUMBIND_DEMO_DIR", ROOT / ".demo"))
PY = sys.executable


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _numbind(*args: str) -> None:
    subprocess.run([PY, "-m", "registry", *args], check=True, stdout=subprocess.DEVNULL)


def _wait_ready(log: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"registry exited early; see {log}")
        if "listening on" in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise SystemExit(f"registry did not start within {timeout:.0f}s; see {log}")


async def _platform_calls(bundle: Bundle) -> None:
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel)
        try:
            results = await tok.tokenize(["+8613800138000", "+8613912345678"])
        finally:
            tok.close()
    print(f"  platform {bundle.principal_id} tokenised 2 numbers under key {results[0].key_id}:")
    for r in results:
        # The demo prints the number beside its token; the registry saw only blinded points.
        print(f"    {r.e164} -> {r.token.hex()[:32]}…")


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    data = DEMO / "registry"
    port = _free_port(7443)
    listen = f"127.0.0.1:{port}"
    print(f"numbind demo: setting up in {DEMO}")
    _numbind("admin", "init", "--data-dir", str(data), "--registry", listen)
    _numbind(
        "admin",
        "add-platform",
        "demo-drive",
        "--display-name",
        "示例网盘",
        "--category",
        "cloud-drive",
        "--out",
        str(DEMO / "bundles" / "demo-drive"),
        "--data-dir",
        str(data),
        "--registry",
        listen,
    )
    _numbind(
        "admin",
        "add-carrier",
        "demo-mobile",
        "--display-name",
        "示例移动",
        "--out",
        str(DEMO / "bundles" / "demo-mobile"),
        "--data-dir",
        str(data),
        "--registry",
        listen,
    )
    log = DEMO / "registry.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [PY, "-m", "registry", "serve", "--data-dir", str(data), "--listen", listen],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(log, proc)
        print(f"registry listening on {listen} (mTLS; log: {log})")
        asyncio.run(_platform_calls(Bundle.load(DEMO / "bundles" / "demo-drive")))
        print()
        print("Where to look:")
        print(f"  registry log:      {log}")
        print(f"  platform bundle:   {DEMO / 'bundles' / 'demo-drive'}")
        print(
            f"  tokenise yourself: .venv/bin/numbind tokenize --bundle "
            f"{DEMO / 'bundles' / 'demo-drive'} 13800138000"
        )
        print(f"  admin stats:       .venv/bin/numbind admin stats --data-dir {data}")
        print("Press Ctrl-C to stop.", flush=True)
        while proc.poll() is None:
            time.sleep(0.2)
        print(f"registry exited unexpectedly; see {log}")
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("numbind demo stopped.", flush=True)
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # Explicit, because a background job may inherit SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    raise SystemExit(main())
