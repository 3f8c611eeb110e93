"""The wheel installs one top-level name, `numbind`, builds without a setuptools warning,
and the SDK's quick-start import works from the installed package alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Set in some shells; it makes distutils print "byte-compiling is disabled", a notice
    # about the environment rather than about this project.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Build the project's wheel from a clean copy with the PEP 517 backend that pip runs
    (offline: no build isolation); return it and everything the build printed."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    for folder in ("proto", "registry", "clients"):
        shutil.copytree(ROOT / folder, src / folder, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp / "dist"
    code = (
        "import sys; from setuptools import build_meta as backend; "
        "print('built', backend.build_wheel(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=src,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    (path,) = out.glob("numbind-*.whl")
    return path, log


def test_the_build_prints_no_warning(wheel: tuple[Path, str]) -> None:
    _, log = wheel
    noisy = [line for line in log.splitlines() if "warn" in line.lower() or "!!" in line]
    assert noisy == [], "\n".join(noisy)


def test_the_wheel_holds_only_the_numbind_namespace(wheel: tuple[Path, str]) -> None:
    path, _ = wheel
    names = zipfile.ZipFile(path).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"numbind", path.name.split("-py3")[0] + ".dist-info"}, tops
    assert "numbind/__init__.py" not in names  # a PEP 420 namespace across three folders
    for wanted in (
        "numbind/sdk/__init__.py",
        "numbind/sdk/wire.py",
        "numbind/protocol/digest.py",
        "numbind/registry/app.py",
        "numbind/v1/platforms_pb2.py",
        "numbind/cli/__init__.py",
        "numbind/carrier_app/templates/base.html",
        "numbind/carrier_app/static/app.css",
        "numbind/demo/__main__.py",
    ):
        assert wanted in names, wanted


def test_the_installed_package_imports_the_sdk_and_nothing_generic(
    wheel: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = wheel
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "--target", str(target), str(path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert {p.name for p in target.iterdir()} - {"bin"} == {
        "numbind",
        path.name.split("-py3")[0] + ".dist-info",
    }
    code = """
import numbind.sdk, sys
from numbind.sdk import PlatformClient, CarrierClient, Tokenizer, EventFeed, ErrorCode
assert numbind.sdk.__file__.startswith(sys.argv[1]), numbind.sdk.__file__
for generic in ("registry", "clients"):
    try:
        __import__(generic)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"import {generic} worked")
print("ok", ErrorCode.UNAVAILABLE)
"""
    # -S: no site hooks, so neither this checkout's editable install nor its folders are
    # on the path; the dependencies (grpc, ...) come from the environment's site-packages.
    path_entries = [str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, str(target)],
        cwd=empty,
        env={**_env(), "PYTHONPATH": os.pathsep.join(path_entries)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok UNAVAILABLE"
