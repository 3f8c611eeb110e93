"""storage.principals: the auth interceptor's lookup (driver SQL) answers exactly what the
registered row holds, and nothing for a suspended or unknown principal."""

from __future__ import annotations

from numbind.registry.domain.types import Principal
from numbind.registry.storage import principals
from numbind.registry.storage.db import Database, Session


def _register(session: Session) -> Principal:
    return principals.register(
        session,
        "platform",
        "drive",
        display_name="示例网盘",
        category="storage",
        cert_sha256=bytes(range(32)),
    )


def test_get_active_answers_the_registered_principal_field_for_field(db: Database) -> None:
    made = db.transact(_register)
    db.transact(lambda s: principals.register(s, "platform", "food"))  # another row
    got = db.transact(lambda s: principals.get_active(s, "platform", "drive"), write=False)
    assert got == made
    assert got is not None and got.cert_sha256 == bytes(range(32)) and got.standing == 0
    bare = db.transact(lambda s: principals.get_active(s, "platform", "food"), write=False)
    assert bare is not None and bare.cert_sha256 is None and bare.display_name == ""


def test_get_active_is_none_for_a_suspended_unknown_or_other_role_principal(db: Database) -> None:
    db.transact(_register)
    assert db.transact(lambda s: principals.get_active(s, "carrier", "drive")) is None
    assert db.transact(lambda s: principals.get_active(s, "platform", "nobody")) is None
    db.transact(lambda s: principals.set_suspended(s, "platform", "drive", True))
    assert db.transact(lambda s: principals.get_active(s, "platform", "drive")) is None
    db.transact(lambda s: principals.set_suspended(s, "platform", "drive", False))
    back = db.transact(lambda s: principals.get_active(s, "platform", "drive"))
    assert back is not None and back.standing == 2  # each change of standing counts
