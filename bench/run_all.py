"""`make bench`: every benchmark, each figure printed beside its floor and the ratio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["tokens", "rekey", "publish", "reissue", "oversize", "memory", "log", "scale"]


def main() -> int:
    failed = []
    for name in BENCHES:
        if not (ROOT / "bench" / f"{name}.py").exists():
            continue
        print(f"\n== bench/{name}.py ==", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, env=os.environ)
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
