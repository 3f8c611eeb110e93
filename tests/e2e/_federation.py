"""Helpers for federation tests: registries joined through `numbind federation` files."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numbind.cli import main

HUB_ADDRESS = "127.0.0.1:17443"
BANK_ADDRESS = "127.0.0.1:17444"
NET_ADDRESS = "127.0.0.1:17445"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def cli(*argv: str | Path) -> Result:
    """`numbind ARGV` in this process, through numbind.cli.main, with its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Result(code, out.getvalue(), err.getvalue())


def ok(*argv: str | Path) -> str:
    result = cli(*argv)
    assert result.code == 0, result
    return result.out


def fed(action: str, data_dir: Path, *argv: str | Path) -> str:
    """`numbind federation ACTION --data-dir DATA_DIR ARGV`, which must succeed."""
    return ok("federation", action, "--data-dir", data_dir, *argv)


def show(data_dir: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(fed("show", data_dir, "--json"))
    return value


@dataclass(frozen=True)
class Dirs:
    """Data dirs of three registries (admin init done, no federation yet)."""

    root: Path
    hub: Path
    bank: Path
    net: Path

    @classmethod
    def create(cls, root: Path) -> Dirs:
        dirs = cls(root, root / "hub", root / "bank", root / "net")
        for d in (dirs.hub, dirs.bank, dirs.net):
            ok("admin", "init", "--data-dir", d)
        return dirs

    def copy(self, dest: Path) -> Dirs:
        for name in ("hub", "bank", "net"):
            shutil.copytree(self.root / name, dest / name)
        return Dirs(dest, dest / "hub", dest / "bank", dest / "net")


def join(dirs: Dirs, federation: str = "demo", *, members: tuple[str, ...] = ("bank",)) -> None:
    """The hub starts `federation`; each named member requests, is added, and accepts."""
    fed("init", dirs.hub, "--id", federation, "--address", HUB_ADDRESS)
    addresses = {"bank": BANK_ADDRESS, "net": NET_ADDRESS}
    for name in members:
        data_dir = getattr(dirs, name)
        req, grant = dirs.root / f"{name}.req", dirs.root / f"{name}.grant"
        fed(
            "request",
            data_dir,
            "--id",
            name,
            "--address",
            addresses[name],
            "--out",
            req,
        )
        fed("add-member", dirs.hub, req, "--out", grant)
        fed("accept", data_dir, grant)


def version_of(data_dir: Path) -> int:
    version: int = show(data_dir)["version"]
    return version


def refused(action: str, data_dir: Path, *argv: str | Path, want: str) -> str:
    result = cli("federation", action, "--data-dir", data_dir, *argv)
    assert result.code == 1, result
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numbind: error: "), result.err
    assert "Traceback" not in result.err
    assert want in lines[0], lines[0]
    return lines[0]
