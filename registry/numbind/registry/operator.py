"""Operator actions on a registry's data dir: initialise it, register and suspend principals.

These run beside (or before) the server with direct access to the data dir. Registering and
suspending go through the same AdminService as the Admin RPCs, so one set of checks applies
to `numbind admin add-*|suspend|resume` and to the RPCs alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.registry.app import open_database, reconcile_key_map
from numbind.registry.config import Settings, client_address
from numbind.registry.datadir import ADMIN_BUNDLE as ADMIN_BUNDLE  # still operator.ADMIN_BUNDLE
from numbind.registry.datadir import init_lock, private_umask
from numbind.registry.domain.principals import NewPrincipal
from numbind.registry.domain.types import Role
from numbind.registry.federation.log_trust import give_bundle_trust
from numbind.registry.keys import KeyRing
from numbind.registry.pki import CertificateAuthority
from numbind.registry.server_cert import (
    DEFAULT_SERVER_NAMES,
    ServerCert,
    address_hosts,
    ensure_server_cert,
    server_name,
)
from numbind.registry.services.admin import AdminService
from numbind.registry.services.directory import Directory
from numbind.registry.storage import migrate
from numbind.registry.storage.db import sqlite_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitResult:
    created_ca: bool
    admin_bundle: Path
    active_key_id: str
    schema: str
    server_cert: ServerCert
    # Hash partitions per growing table (PostgreSQL); None where not partitioned.
    partitions: int | None = None


def holds_registry(settings: Settings) -> bool:
    """Whether the store `settings` name has a registry's schema. False for a database
    nobody migrated (a new one, or a mistyped URL) and for an SQLite file that is not
    there, which this does not create."""
    path = sqlite_file(settings.effective_database_url)
    if path is not None and not path.exists():
        return False
    db = open_database(settings)
    try:
        return migrate.has_schema(db.write_engine)
    finally:
        db.close()


def init_finished(settings: Settings) -> bool:
    """Whether `init` ran to its end for this data dir: the admin bundle is the last thing
    it writes. A data dir with certificates but no admin bundle is from an init that
    failed (the store away, a bad setting) and is finished by running init again."""
    return (settings.data_dir / ADMIN_BUNDLE / "bundle.json").exists()


def _ca(settings: Settings) -> CertificateAuthority:
    if not (settings.pki_dir / "ca.key").exists():
        raise FileNotFoundError(
            f"no registry CA in {settings.pki_dir}: if your registry's data dir is another, "
            "name it (--data-dir or NUMBIND_DATA_DIR); else make one with `numbind admin "
            f"init --data-dir {settings.data_dir}`"
        )
    return CertificateAuthority.load(settings.pki_dir)


def init(
    settings: Settings,
    *,
    registry_address: str | None = None,
    server_names: Sequence[str] = (),
    partitions: int | None = None,
) -> InitResult:
    """Idempotent: creates whatever is missing (CA, server cert, schema, first key, admin),
    every file private from the start (numbind.registry.datadir). The server certificate
    names the defaults, the hosts of ``registry_address`` and of --listen (where the admin
    bundle and serving.json send clients) and ``server_names``; one that misses any of them
    is re-issued naming them too (ValueError for a bad name, before anything is written).
    `partitions` as in storage.migrate.upgrade: the count the schema is built with, refused
    if it was built with another."""
    hosts = [
        *DEFAULT_SERVER_NAMES,
        *(address_hosts(registry_address) if registry_address else ()),
        *address_hosts(settings.listen),
        *server_names,
    ]
    with private_umask():
        return _init(settings, registry_address, hosts, partitions)


def _init(
    settings: Settings, registry_address: str | None, hosts: list[str], partitions: int | None
) -> InitResult:
    for host in hosts:
        server_name(host)  # refuse a bad name before the data dir is made
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with init_lock(settings.data_dir):
        return _init_locked(settings, registry_address, hosts, partitions)


def _init_locked(
    settings: Settings, registry_address: str | None, hosts: list[str], partitions: int | None
) -> InitResult:
    pki = settings.pki_dir
    created = not (pki / "ca.key").exists()
    ca = CertificateAuthority.create(pki) if created else CertificateAuthority.load(pki)
    server_cert = ensure_server_cert(ca, pki, hosts)
    db = open_database(settings)
    try:
        _, head = migrate.upgrade(db.write_engine, partitions=partitions)
        built = migrate.store_partitions(db.write_engine)
        keys = KeyRing(db, settings.keys_dir)
        keys.ensure_active()
        reconcile_key_map(db, keys)
        bundle_dir = settings.data_dir / ADMIN_BUNDLE
        if not (bundle_dir / "bundle.json").exists():
            _register_and_write(
                AdminService(db, keys, Directory(db), ca),
                ca,
                NewPrincipal(Role.ADMIN, "admin", "registry admin"),
                None,
                bundle_dir,
                registry_address or settings.listen,
            )
        return InitResult(created, bundle_dir, keys.active().key_id, head, server_cert, built)
    finally:
        db.close()


@contextmanager
def _admin(
    settings: Settings, ca: CertificateAuthority | None, *, migrate_schema: bool
) -> Iterator[AdminService]:
    """The AdminService on the data dir's store (its schema brought to head if asked).
    Whatever is created meanwhile (the store, bundles) is private (datadir.private_umask)."""
    with private_umask():
        db = open_database(settings)
        try:
            if migrate_schema:
                migrate.upgrade(db.write_engine)
            yield AdminService(db, KeyRing(db, settings.keys_dir), Directory(db), ca)
        finally:
            db.close()


def _register_and_write(
    admin: AdminService,
    ca: CertificateAuthority,
    new: NewPrincipal,
    signing: nacl.signing.SigningKey | None,
    out: Path,
    registry_address: str,
) -> Bundle:
    key_pem, csr_pem = make_client_key_and_csr(new.name)
    cert_pem = admin.register_offline(new, csr_pem)
    return Bundle.write(
        out,
        registry=registry_address,
        role=new.role,  # type: ignore[arg-type]
        principal_id=new.name,
        ca_pem=ca.cert_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        attestation_seed=bytes(signing) if signing is not None else None,
    )


def add_principal(
    settings: Settings,
    role: str,
    name: str,
    out: Path,
    *,
    display_name: str,
    category: str | None = None,
    registry_address: str | None = None,
) -> Bundle:
    """Register a platform or carrier and write its bundle (a carrier's includes a fresh
    attestation signing key). Refuses what the RegisterPlatform/RegisterCarrier RPCs
    refuse, with the same messages, before touching the data dir. A platform without a
    category is "other"."""
    signing = nacl.signing.SigningKey.generate() if role == Role.CARRIER else None
    if category is None:
        category = "other" if role == Role.PLATFORM else ""
    new = NewPrincipal(
        role,
        name,
        display_name,
        category,
        signing.verify_key.encode() if signing is not None else None,
    )
    ca = _ca(settings)
    with _admin(settings, ca, migrate_schema=True) as admin:
        bundle = _register_and_write(
            admin,
            ca,
            new,
            signing,
            out,
            registry_address or _client_address(settings),
        )
        give_bundle_trust(settings.data_dir, out)
        return bundle


def principal_roles(settings: Settings, name: str) -> list[str]:
    """The roles (platform, carrier) under which ``name`` is registered
    (AdminService.roles_of, offline)."""
    with _admin(settings, None, migrate_schema=False) as admin:
        return admin.roles_of(name)


def reissue_bundle(
    settings: Settings,
    role: str,
    name: str,
    out: Path,
    *,
    registry_address: str | None = None,
) -> Bundle:
    """A fresh bundle for an existing platform or carrier: a new client key and
    certificate (and, for a carrier, a new attestation key), pinned so the registry refuses
    the old ones. Files in ``out`` that are not credentials (a platform's account-ref.key,
    its feed cursor) are kept."""
    signing = nacl.signing.SigningKey.generate() if role == Role.CARRIER else None
    ca = _ca(settings)
    key_pem, csr_pem = make_client_key_and_csr(name)
    with _admin(settings, ca, migrate_schema=True) as admin:
        principal, cert_pem = admin.reissue_offline(
            role, name, csr_pem, signing.verify_key.encode() if signing is not None else None
        )
        bundle = Bundle.write(
            out,
            registry=registry_address or _client_address(settings),
            role=principal.role,  # type: ignore[arg-type]
            principal_id=principal.name,
            ca_pem=ca.cert_pem,
            cert_pem=cert_pem,
            key_pem=key_pem,
            attestation_seed=bytes(signing) if signing is not None else None,
        )
        give_bundle_trust(settings.data_dir, out)
        return bundle


def set_suspended(settings: Settings, role: str, name: str, suspended: bool) -> None:
    """Suspend or resume a platform or carrier (AdminService.set_suspended, offline)."""
    with _admin(settings, None, migrate_schema=False) as admin:
        admin.set_suspended_offline(role, name, suspended)


def _client_address(settings: Settings) -> str:
    """The address a new bundle names when --registry does not: the advertised one, else
    where the registry serves, else --listen's (config.client_address)."""
    known = client_address(settings.data_dir)
    return known[0] if known is not None else settings.listen
