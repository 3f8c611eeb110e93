"""Principals: platforms, carriers and admins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain.types import Principal, now_us
from numbind.registry.errors import AlreadyExists, NotFound
from numbind.registry.storage import signals
from numbind.registry.storage.db import driver_sql, marks
from numbind.registry.storage.models import PrincipalRow
from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

# What _to_domain reads, for a driver-SQL read of a principal.
_DOMAIN_COLUMNS = "pk, role, name, display_name, category, cert_sha256, standing"


def _to_domain(row: PrincipalRow | Row[Any]) -> Principal:
    return Principal(
        row.pk,
        row.role,
        row.name,
        row.display_name,
        row.category,
        row.cert_sha256,
        row.standing,
    )


@dataclass(frozen=True)
class Standing:
    """What decides whether a principal may go on being served."""

    version: int
    suspended: bool
    cert_sha256: bytes | None


def attestation_key(session: Session, pk: int) -> bytes | None:
    """The principal's registered attestation key (None: none, or no such principal). One
    indexed read of one column, in driver SQL: every holder call reads it, twice for a
    query."""
    conn = session.connection()
    key = conn.exec_driver_sql(
        driver_sql(conn, "SELECT attestation_key FROM principals WHERE pk = ?"), (pk,)
    ).scalar_one_or_none()
    return None if key is None else bytes(key)


@dataclass(frozen=True)
class Named:
    """How a platform is shown to a holder."""

    name: str
    display_name: str
    category: str


def names_by_pks(session: Session, pks: set[int]) -> dict[int, Named]:
    """pk -> names, for the platforms in a holder's view (driver SQL: it runs for every
    query at every member; a holder's view names a few platforms)."""
    if not pks:
        return {}
    conn = session.connection()
    rows = conn.exec_driver_sql(
        driver_sql(
            conn,
            "SELECT pk, name, display_name, category FROM principals"
            f" WHERE pk IN ({marks(len(pks))})",
        ),
        tuple(pks),
    )
    return {pk: Named(name, display, category) for pk, name, display, category in rows}


def lock(session: Session, pk: int) -> None:
    """Hold the principal's row until the transaction ends (FOR UPDATE; SQLite's one writer
    already does): what must not run twice at once for one principal waits here."""
    session.execute(select(PrincipalRow.pk).where(PrincipalRow.pk == pk).with_for_update())


def standing(session: Session, pk: int) -> Standing | None:
    """The principal's current standing, or None once it no longer exists. One indexed read,
    in driver SQL: every open stream calls it every second, and on every wake-up."""
    conn = session.connection()
    row = conn.exec_driver_sql(
        driver_sql(conn, "SELECT standing, suspended, cert_sha256 FROM principals WHERE pk = ?"),
        (pk,),
    ).one_or_none()
    if row is None:
        return None
    return Standing(int(row[0]), bool(row[1]), None if row[2] is None else bytes(row[2]))


def find(session: Session, role: str, name: str) -> PrincipalRow | None:
    return session.scalars(
        select(PrincipalRow).where(PrincipalRow.role == role, PrincipalRow.name == name)
    ).one_or_none()


def get_active(session: Session, role: str, name: str) -> Principal | None:
    """The principal if registered and not suspended, else None. Driver SQL: the auth
    interceptor reads it for each caller once a second (services.directory), and loading
    the whole ORM row cost ~2% of a member's CPU in a reissue, more than the read."""
    conn = session.connection()
    row = conn.exec_driver_sql(
        driver_sql(
            conn,
            f"SELECT {_DOMAIN_COLUMNS} FROM principals"
            " WHERE role = ? AND name = ? AND NOT suspended",
        ),
        (role, name),
    ).one_or_none()
    return None if row is None else _to_domain(row)


def register(
    session: Session,
    role: str,
    name: str,
    *,
    display_name: str = "",
    category: str = "",
    attestation_key: bytes | None = None,
    cert_sha256: bytes | None = None,
) -> Principal:
    if find(session, role, name) is not None:
        raise AlreadyExists(f"{role}_id: {name!r} is already registered")
    row = PrincipalRow(
        role=role,
        name=name,
        display_name=display_name,
        category=category,
        suspended=False,
        attestation_key=attestation_key,
        cert_sha256=cert_sha256,
        created_us=now_us(),
        feed_head=0,
    )
    session.add(row)
    session.flush()
    signals.announce(session, signals.PRINCIPALS)  # caches may hold it as unknown
    return _to_domain(row)


def set_suspended(session: Session, role: str, name: str, suspended: bool) -> int:
    """Suspend or resume; bumps the standing version. Returns the principal's pk."""
    pk = session.execute(
        update(PrincipalRow)
        .where(PrincipalRow.role == role, PrincipalRow.name == name)
        .values(suspended=suspended, standing=PrincipalRow.standing + 1)
        .returning(PrincipalRow.pk)
    ).scalar_one_or_none()
    if pk is None:
        raise NotFound(f"principal_id: no {role} named {name!r}")
    signals.announce(session, signals.PRINCIPALS, [int(pk)])
    return int(pk)


def set_certificate(
    session: Session, role: str, name: str, cert_sha256: bytes, attestation_key: bytes | None
) -> Principal:
    """Pin a new certificate (and, for a carrier, a new attestation key): the old ones stop
    working at once."""
    row = find(session, role, name)
    if row is None:
        raise NotFound(f"principal_id: no {role} named {name!r}")
    row.cert_sha256 = cert_sha256
    if attestation_key is not None:
        row.attestation_key = attestation_key
    row.standing = row.standing + 1
    session.flush()
    signals.announce(session, signals.PRINCIPALS, [row.pk])
    return _to_domain(row)


def set_attestation_key(session: Session, name: str, key: bytes) -> int:
    """Replace a carrier's attestation key; bumps the standing version. Returns its pk."""
    row = find(session, "carrier", name)
    if row is None:
        raise NotFound(f"carrier_id: no carrier named {name!r}")
    row.attestation_key = key
    row.standing = row.standing + 1
    signals.announce(session, signals.PRINCIPALS, [row.pk])
    return row.pk


def list_all(session: Session) -> list[PrincipalRow]:
    return list(
        session.scalars(select(PrincipalRow).order_by(PrincipalRow.role, PrincipalRow.name))
    )


def by_pks(session: Session, pks: set[int]) -> dict[int, PrincipalRow]:
    if not pks:
        return {}
    rows = session.scalars(select(PrincipalRow).where(PrincipalRow.pk.in_(pks)))
    return {r.pk: r for r in rows}


def pks_by_name(session: Session, role: str, names: Iterable[str]) -> dict[str, int]:
    """name -> pk for those of `names` registered under `role` (unknown names are absent)."""
    wanted = set(names)
    if not wanted:
        return {}
    rows = session.execute(
        select(PrincipalRow.name, PrincipalRow.pk).where(
            PrincipalRow.role == role, PrincipalRow.name.in_(wanted)
        )
    )
    return {name: pk for name, pk in rows}


def sync_registries(session: Session, members: dict[str, str]) -> None:
    """Peer registries as principals, from the installed manifest (member id -> display
    name): each gets its row, active; a registry the manifest no longer names is
    suspended, so its certificate stops working even before the TLS roots drop its CA."""
    rows = {
        r.name: r
        for r in session.scalars(select(PrincipalRow).where(PrincipalRow.role == "registry"))
    }
    for name, display_name in members.items():
        row = rows.get(name)
        if row is None:
            register(session, "registry", name, display_name=display_name, category="registry")
        elif row.suspended or row.display_name != display_name:
            row.suspended = False
            row.display_name = display_name
    for name, row in rows.items():
        if name not in members:
            row.suspended = True
