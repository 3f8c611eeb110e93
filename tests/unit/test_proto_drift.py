"""Regenerating the stubs with the pinned generators must reproduce the committed files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerated_stubs_match_committed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "proto" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    committed = ROOT / "proto" / "numbind" / "v1"
    fresh = tmp_path / "numbind" / "v1"
    names = sorted(p.name for p in committed.iterdir() if "_pb2" in p.name)
    assert names == sorted(p.name for p in fresh.iterdir() if "_pb2" in p.name)
    protos = sorted(committed.glob("*.proto"))
    # each .proto yields (pb2, pb2_grpc) x (.py, .pyi): a missing or stray stub fails here
    assert len(names) == 4 * len(protos) and protos
    for name in names:
        assert (fresh / name).read_bytes() == (committed / name).read_bytes(), (
            f"{name} differs from a fresh `make proto`; regenerate and commit"
        )
