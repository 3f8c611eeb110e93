"""Operator actions on a registry's data dir: initialise it, register principals locally.

These run beside (or before) the server with direct access to the data dir; the same
registrations are also available remotely through the Admin service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.protocol.files import write_private_file
from numbind.registry.app import reconcile_key_map
from numbind.registry.config import Settings, served_address
from numbind.registry.domain import validate
from numbind.registry.domain.types import Role
from numbind.registry.keys import KeyRing
from numbind.registry.pki import CertificateAuthority, PrincipalId
from numbind.registry.storage import migrate, principals
from numbind.registry.storage.db import Database

log = logging.getLogger(__name__)

ADMIN_BUNDLE = "admin-bundle"


@dataclass(frozen=True)
class InitResult:
    created_ca: bool
    admin_bundle: Path
    active_key_id: str
    schema: str


def _ca(settings: Settings) -> CertificateAuthority:
    if not (settings.pki_dir / "ca.key").exists():
        raise FileNotFoundError(
            f"no registry CA in {settings.pki_dir}; run `numbind admin init --data-dir "
            f"{settings.data_dir}` first"
        )
    return CertificateAuthority.load(settings.pki_dir)


def init(settings: Settings, *, registry_address: str | None = None) -> InitResult:
    """Idempotent: creates whatever is missing (CA, server cert, schema, first key, admin)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pki = settings.pki_dir
    created = not (pki / "ca.key").exists()
    ca = CertificateAuthority.create(pki) if created else CertificateAuthority.load(pki)
    if not (pki / "server.pem").exists():
        cert, key = ca.issue_server_cert()
        write_private_file(pki / "server.key", key)
        (pki / "server.pem").write_bytes(cert)
    db = Database(settings.effective_database_url)
    try:
        _, head = migrate.upgrade(db.write_engine)
        keys = KeyRing(db, settings.keys_dir)
        keys.ensure_active()
        reconcile_key_map(db, keys)
        bundle_dir = settings.data_dir / ADMIN_BUNDLE
        if not (bundle_dir / "bundle.json").exists():
            _register_and_write(
                db,
                ca,
                Role.ADMIN,
                "admin",
                bundle_dir,
                registry_address or settings.listen,
                display_name="registry admin",
            )
        return InitResult(created, bundle_dir, keys.active().key_id, head)
    finally:
        db.close()


def _register_and_write(
    db: Database,
    ca: CertificateAuthority,
    role: str,
    name: str,
    out: Path,
    registry_address: str,
    *,
    display_name: str = "",
    category: str = "",
) -> Bundle:
    seed: bytes | None = None
    attestation_key: bytes | None = None
    if role == Role.CARRIER:
        signing = nacl.signing.SigningKey.generate()
        seed, attestation_key = bytes(signing), signing.verify_key.encode()
    key_pem, csr_pem = make_client_key_and_csr(name)
    cert_pem = ca.sign_csr(csr_pem, PrincipalId(role, name))  # type: ignore[arg-type]
    db.transact(
        lambda s: principals.register(
            s,
            role,
            name,
            display_name=display_name,
            category=category,
            attestation_key=attestation_key,
        )
    )
    return Bundle.write(
        out,
        registry=registry_address,
        role=role,  # type: ignore[arg-type]
        principal_id=name,
        ca_pem=ca.cert_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        attestation_seed=seed,
    )


def add_principal(
    settings: Settings,
    role: str,
    name: str,
    out: Path,
    *,
    display_name: str,
    category: str = "",
    registry_address: str | None = None,
) -> Bundle:
    validate.principal_id(f"{role}_id", name)
    if not display_name.strip():
        raise ValueError("display_name: got '', want a name shown to holders")
    ca = _ca(settings)
    db = Database(settings.effective_database_url)
    try:
        migrate.upgrade(db.write_engine)
        return _register_and_write(
            db,
            ca,
            role,
            name,
            out,
            registry_address or served_address(settings.data_dir) or settings.listen,
            display_name=display_name,
            category=category,
        )
    finally:
        db.close()


def set_suspended(settings: Settings, role: str, name: str, suspended: bool) -> None:
    db = Database(settings.effective_database_url)
    try:
        db.transact(lambda s: principals.set_suspended(s, role, name, suspended))
    finally:
        db.close()
