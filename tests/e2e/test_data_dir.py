"""The data dir is private and the embedded store durable (issue 10, finding 5):
registry.db and its -wal/-shm were 0644 in a 0755 data dir, readable by any local user,
and SQLite ran synchronous=NORMAL."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from numbind.cli import main
from numbind.registry import operator
from numbind.registry.app import Registry
from numbind.registry.config import Settings
from numbind.registry.datadir import ExposedDataDir
from numbind.registry.testing import running_registry

from tests.e2e._story import days_ago, publish, tokenize


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The most common umask of a login shell: files 0644, directories 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)) or ".": stat.S_IMODE(p.lstat().st_mode)
        for p in [root, *root.rglob("*")]
    }


@pytest.mark.usefixtures("loose_umask")
async def test_everything_in_the_data_dir_is_private_from_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_registry(data) as reg:
        p1 = reg.add_platform("p1")
        # A write, so that the store's -wal and -shm exist.
        await publish(p1, await tokenize(p1, "+8613800138000"), [(b"a", days_ago(1))])
        # The README's `numbind log monitor --bundle ADMIN_BUNDLE` pins the log key in the
        # admin bundle, inside the data dir (at 0644 it kept the next `serve` from starting).
        argv = ["log", "monitor", "--bundle", str(reg.admin_bundle.directory)]
        assert await asyncio.to_thread(main, argv) == 0
        modes = _modes(data)
        assert {"registry.db", "registry.db-wal", "registry.db-shm", "pki/ca.pem"} <= set(modes)
        assert "admin-bundle/log.vkey" in modes
    loose = {
        name: f"{mode:04o}"
        for name, mode in modes.items()
        if mode != (0o700 if (data / name).is_dir() else 0o600)
    }
    assert loose == {}


def test_the_registry_refuses_to_serve_from_a_readable_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", listen="127.0.0.1:0")
    operator.init(settings, registry_address="127.0.0.1:1")
    store = settings.data_dir / "registry.db"
    store.chmod(0o644)
    with pytest.raises(ExposedDataDir) as err:
        Registry.open(settings)
    message = str(err.value)
    assert f"{store} (file, mode 0644)" in message
    assert f"`chmod 600 {store}`" in message
    # `numbind serve` says the same on one line and exits 1, serving nothing.
    capsys.readouterr()
    code = main(["serve", "--data-dir", str(settings.data_dir), "--listen", "127.0.0.1:0"])
    assert code == 1
    assert f"chmod 600 {store}" in capsys.readouterr().err
    # A readable directory is refused too; fixed, the registry opens.
    store.chmod(0o600)
    settings.data_dir.chmod(0o755)
    with pytest.raises(ExposedDataDir, match=f"`chmod 700 {settings.data_dir}`"):
        Registry.open(settings)
    settings.data_dir.chmod(0o700)
    Registry.open(settings).close()


async def test_the_embedded_store_syncs_every_commit(tmp_path: Path) -> None:
    async with running_registry(tmp_path / "data") as reg:

        def pragma() -> int:
            with reg.registry.db.write_engine.connect() as conn:
                return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

        assert await asyncio.to_thread(pragma) == 2  # FULL
