"""The layer rules (pyproject's [tool.importlinter] contracts) hold, and a wrong arrow
breaks them: the contracts are checked, not just written down."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("proto", "registry", "clients")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # -S: no site hooks, so numbind comes from `root`'s three folders alone and not from
    # the editable install's finder; the linter itself comes from site-packages.
    path = [str(root / f) for f in FOLDERS] + [sysconfig.get_paths()["purelib"]]
    code = "import sys; from importlinter.cli import lint_imports_command as c; c()"
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_tree(dest: Path) -> None:
    for folder in FOLDERS:
        shutil.copytree(
            ROOT / folder / "numbind",
            dest / folder / "numbind",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    out = _lint_imports(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_an_sdk_module_importing_the_server_breaks_the_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    module = tmp_path / "clients" / "numbind" / "sdk" / "retry.py"
    module.write_text(module.read_text() + "\nimport numbind.registry.app  # noqa\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "The SDK, the carrier app and the demo never import the server BROKEN" in out.stdout
    assert "numbind.sdk.retry -> numbind.registry.app" in out.stdout


def test_domain_code_importing_sqlalchemy_breaks_the_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    module = tmp_path / "registry" / "numbind" / "registry" / "domain" / "quota.py"
    module.write_text(module.read_text() + "\nimport sqlalchemy  # noqa\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "numbind.registry.domain.quota -> sqlalchemy" in out.stdout


def test_a_service_or_the_operator_importing_sqlalchemy_breaks_the_contract(
    tmp_path: Path,
) -> None:
    # SQL lives in storage/: services and the operator reach SQLAlchemy only through it.
    _copy_tree(tmp_path)
    registry = tmp_path / "registry" / "numbind" / "registry"
    for module in (registry / "services" / "directory.py", registry / "operator.py"):
        module.write_text(module.read_text() + "\nfrom sqlalchemy import select  # noqa\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "SQL only in storage" in out.stdout and "BROKEN" in out.stdout
    assert "numbind.registry.services.directory -> sqlalchemy" in out.stdout
    assert "numbind.registry.operator -> sqlalchemy" in out.stdout


def test_a_store_side_module_reading_key_files_breaks_the_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    module = tmp_path / "registry" / "numbind" / "registry" / "services" / "rekey.py"
    module.write_text(module.read_text() + "\nimport numbind.registry.keys  # noqa\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "The store side never holds a token key" in out.stdout
    assert "numbind.registry.services.rekey -> numbind.registry.keys" in out.stdout
