"""What a store URL names, read by SQLAlchemy's own URL parser (storage.db): the SQLite
file (for its directory, its serving lock, and whether it exists yet) and the URL as
messages show it, with no password."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.registry.storage.db import shown_url, sqlite_file
from numbind.registry.storage.lock import StoreLock


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:////srv/numbind data/registry.db", Path("/srv/numbind data/registry.db")),
        ("sqlite:///registry.db", Path("registry.db")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:registry?mode=ro&uri=true", None),
        ("postgresql+psycopg://numbind@127.0.0.1/registry", None),
        ("notaurl", None),
    ],
)
def test_the_sqlite_file_of_a_url(url: str, file: Path | None) -> None:
    assert sqlite_file(url) == file
    lock = StoreLock.for_url(url)
    assert (lock and lock.path) == (file and file.with_name(file.name + ".serving.lock"))


def test_a_url_as_shown_hides_its_password() -> None:
    shown = shown_url("postgresql+psycopg://numbind:sekret@db.internal:5432/registry")
    assert shown == "postgresql+psycopg://numbind:***@db.internal:5432/registry"
    assert shown_url("notaurl") == "notaurl"
