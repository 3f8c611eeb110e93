"""Group commit (storage.group_commit): concurrent writes share a transaction on SQLite,
each unit isolated in its own SAVEPOINT, and each caller told only after the commit; on
PostgreSQL each unit is its own transaction, as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from numbind.registry.errors import NotFound
from numbind.registry.storage import principals
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.group_commit import GroupCommit
from numbind.registry.storage.models import PrincipalRow
from sqlalchemy import event, func, select, text


def _commits(db: Database) -> list[int]:
    seen = [0]

    @event.listens_for(db.write_engine, "commit")
    def _count(conn: object) -> None:
        seen[0] += 1

    return seen


def _names(db: Database) -> set[str]:
    return set(db.transact(lambda s: list(s.scalars(select(PrincipalRow.name))), write=False))


def _register(name: str) -> Callable[[Session], str]:
    def unit(session: Session) -> str:
        principals.register(session, "platform", name)
        return name

    return unit


async def test_concurrent_writes_share_commits_and_all_land(db: Database) -> None:
    group = GroupCommit(db)
    commits = _commits(db)
    names = [f"p{i:02d}" for i in range(20)]
    got = await asyncio.gather(*(group.run(_register(n)) for n in names))
    made = commits[0]
    assert got == names
    assert set(names) <= _names(db)
    if db.is_sqlite:
        # Without grouping: 20 commits. All 20 were queued before the drainer first ran,
        # so they share one transaction.
        assert made == group.groups == 1, made
    else:
        assert made == 20 and group.groups == 0


async def test_a_failing_unit_is_rolled_back_alone(db: Database) -> None:
    group = GroupCommit(db)

    def refused(session: Session) -> str:
        principals.register(session, "platform", "refused")
        raise NotFound("no such order")

    results = await asyncio.gather(
        group.run(_register("before")),
        group.run(refused),
        group.run(_register("after")),
        return_exceptions=True,
    )
    assert results[0] == "before" and results[2] == "after"
    assert isinstance(results[1], NotFound)
    names = _names(db)
    assert {"before", "after"} <= names and "refused" not in names


async def test_a_database_error_reruns_each_unit_alone(db: Database) -> None:
    group = GroupCommit(db)

    def broken(session: Session) -> None:
        session.execute(text("SELECT no_such_column FROM principals"))

    results = await asyncio.gather(
        group.run(_register("one")),
        group.run(broken),
        group.run(_register("two")),
        return_exceptions=True,
    )
    assert results[0] == "one" and results[2] == "two"
    assert isinstance(results[1], Exception)
    count = db.transact(
        lambda s: s.scalar(
            select(func.count()).select_from(PrincipalRow).where(PrincipalRow.name == "one")
        ),
        write=False,
    )
    assert count == 1  # written once, though its group was run twice


def test_a_new_event_loop_gets_its_own_drainer(db: Database) -> None:
    group = GroupCommit(db)
    assert asyncio.run(group.run(_register("first-loop"))) == "first-loop"
    assert asyncio.run(group.run(_register("second-loop"))) == "second-loop"
