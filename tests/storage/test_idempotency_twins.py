"""Two copies of one request (same principal, method, request id and body) at the same
moment, as a client's retry racing its first try through another registry process: the
second waits for the first and replays its answer; it never acts itself.

It used to read no record, act, and meet the first copy's effects in its own checks: a
platform "already registered", an attestation "already used", a rotation "in progress",
each answered as an error to a client whose request had in fact succeeded."""

from __future__ import annotations

import threading
from typing import Any

from numbind.registry.errors import AlreadyExists
from numbind.registry.storage import idempotency, principals
from numbind.registry.storage.db import Database
from sqlalchemy.orm import Session

from tests.storage._locks import until_one_waits_on_a_lock


def test_a_twin_waits_for_the_first_copy_and_replays_its_answer(pg_db: Database) -> None:
    owner = pg_db.transact(lambda s: principals.register(s, "admin", "root").pk)
    acted = threading.Event()
    release = threading.Event()
    first_done = threading.Event()
    calls: list[str] = []
    answers: dict[str, Any] = {}

    def register(who: str, s: Session, hold: bool) -> dict[str, Any]:
        calls.append(who)
        if not hold:  # the twin's own check runs after the first copy committed
            first_done.wait(10)
        if principals.get_active(s, "platform", "acme") is not None:
            raise AlreadyExists("platform_id: 'acme' is already registered")
        pk = principals.register(s, "platform", "acme").pk
        if hold:
            acted.set()
            release.wait(10)
        return {"pk": pk}

    def copy(who: str, hold: bool) -> None:
        try:
            answers[who] = pg_db.transact(
                lambda s: idempotency.once(
                    s,
                    owner,
                    "RegisterPlatform",
                    "req-1",
                    b"h" * 32,
                    lambda: register(who, s, hold),
                )
            )
        except AlreadyExists as exc:
            answers[who] = exc

    first = threading.Thread(target=copy, args=("first", True))
    first.start()
    assert acted.wait(10)
    twin = threading.Thread(target=copy, args=("twin", False))
    twin.start()
    # The twin waits on the first copy's claim of the request id. (Before the claim it
    # waited for nothing in the database, and 3 s passed first.)
    until_one_waits_on_a_lock(pg_db, 3)
    release.set()
    first.join(10)
    first_done.set()
    twin.join(10)
    assert answers["first"] == answers["twin"], answers
    assert calls == ["first"]
