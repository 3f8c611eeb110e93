"""The Makefile's targets a new user runs first keep out of each other's way."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_serve_does_not_serve_from_the_demos_folder() -> None:
    """`make demo` fills .demo/ with three registries' dirs, logs and bundles; `make serve`
    there added a store beside them and refused to start (the folder is not private)."""
    run = subprocess.run(
        ["make", "-n", "serve"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    (serve,) = [line for line in run.stdout.splitlines() if " serve " in line]
    assert "--data-dir .serve " in serve and ".demo" not in serve, serve
