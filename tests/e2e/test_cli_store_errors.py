"""A store `numbind` cannot use is one line that says why, never SQLAlchemy's traceback:
a server that does not answer, a database that does not exist, a URL that does not parse,
a backend whose driver is not installed; and a password in the URL is never repeated."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from numbind.cli import main
from sqlalchemy import create_engine, make_url, text

from tests.conftest import require_postgres


def _serve(data: Path, url: str) -> list[str]:
    return ["serve", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--database-url", url]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("command", [["admin", "migrate"], ["admin", "init"], ["serve"]])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+psycopg://numbind:sekret@127.0.0.1:1/registry", "Connection refused"),
        ("notaurl", "database URL 'notaurl': Could not parse"),
        ("mysql://numbind:sekret@127.0.0.1/registry", "its driver is not installed"),
    ],
)
def test_a_store_that_cannot_be_used_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], url: str, said: str
) -> None:
    rc, err = _run(
        capsys,
        *command,
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        url,
        *(["--listen", "127.0.0.1:0"] if command == ["serve"] else []),
        *(["--init"] if command == ["serve"] else []),
    )
    assert rc == 1
    (line,) = err.splitlines()
    assert line.startswith("numbind: error: ") and said in line, line
    assert "sekret" not in line and "sqlalche.me" not in line


def test_a_database_that_does_not_exist_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = f"numbind_never_made_{os.getpid()}"
    url = make_url(require_postgres()).set(database=name).render_as_string(hide_password=False)
    rc, err = _run(capsys, "admin", "migrate", "--data-dir", str(tmp_path), "--database-url", url)
    assert rc == 1
    (line,) = err.splitlines()
    assert f'database "{name}" does not exist' in line
    assert "--database-url" in line


def test_an_initialised_data_dir_is_not_served_over_an_empty_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A mistyped URL or path used to be migrated and served: an empty registry that
    answered every caller "unknown principal" (and an SQLite path's directories made)."""
    data = tmp_path / "data"
    assert _run(capsys, "admin", "init", "--data-dir", str(data))[0] == 0
    missing = tmp_path / "nowhere" / "registry.db"
    urls = [f"sqlite:///{missing}"]
    if os.environ.get("NUMBIND_TEST_DATABASE_URL"):
        urls.append(require_postgres())  # wiped: no schema in it
    for url in urls:
        rc, err = _run(capsys, *_serve(data, url), "--init")
        assert rc == 1
        (line,) = err.splitlines()
        assert "holds no registry" in line and str(data) in line, line
    assert not missing.parent.exists()


def test_serve_init_finishes_what_a_failed_init_left(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An init that failed on a store it could not use (here: a server that does not
    answer) has made the certificates but not the admin bundle; once the URL is right,
    `serve --init` finishes it instead of refusing the data dir as another registry's."""
    data = tmp_path / "data"
    refused = "postgresql+psycopg://postgres@127.0.0.1:1/registry"
    rc, _ = _run(capsys, "admin", "init", "--data-dir", str(data), "--database-url", refused)
    assert rc == 1 and (data / "pki" / "server.pem").exists()
    rc, err = _run(capsys, *_serve(data, f"sqlite:///{tmp_path / 'nowhere-yet' / 'r.db'}"))
    # Not "holds no"; and it names the data dir, as running init without one made a new
    # registry in ./numbind-data.
    assert rc == 1 and "`numbind admin init --data-dir" in err and "serve --init" in err
    store = tmp_path / "registry.db"
    from numbind.registry import operator
    from numbind.registry.config import Settings

    settings = Settings(data_dir=data, database_url=f"sqlite:///{store}")
    assert not operator.init_finished(settings)
    operator.init(settings)  # what `serve --init` runs before serving
    assert operator.init_finished(settings) and operator.holds_registry(settings)


def test_what_the_database_refused_is_one_line_with_its_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that answers but refuses (here: a type holds the name of Alembic's version
    table; in the field, out of shared memory building many partitions) is what the server
    said with its HINT, not "cannot be reached" and not a traceback."""
    # `serve` above pointed the root logger at a capture since closed: none, as in a new
    # process (where no `admin` command logs).
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    url = require_postgres()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TYPE alembic_version AS ENUM ('x')"))
    finally:
        engine.dispose()
    rc, err = _run(capsys, "admin", "migrate", "--data-dir", str(tmp_path), "--database-url", url)
    assert rc == 1
    (line,) = err.splitlines()
    assert line.startswith(
        'numbind: error: the store refused: type "alembic_version" already exists; '
        "hint: A relation has an associated type of the same name"
    ), line
    assert "cannot be reached" not in line and "--database-url" not in line


def test_an_admin_command_on_a_data_dir_with_no_registry_says_to_name_the_right_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run without --data-dir (as the README's example did), it acts on ./numbind-data and
    # said only "run `numbind admin init` first": followed, that made a second registry.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NUMBIND_DATA_DIR", raising=False)
    add = ["admin", "add-platform", "acme", "--display-name", "Acme", "--category", "other"]
    rc, err = _run(capsys, *add, "--out", str(tmp_path / "acme"))
    assert rc == 1 and "no registry CA in numbind-data/pki" in err, err
    assert "name it (--data-dir or NUMBIND_DATA_DIR)" in err
    assert not (tmp_path / "numbind-data" / "pki" / "ca.key").exists()
