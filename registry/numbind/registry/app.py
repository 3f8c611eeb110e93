"""The composition root: builds the store, key ring and services from Settings, once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from numbind.registry.config import Settings
from numbind.registry.domain.quota import Quotas
from numbind.registry.keys import KeyRing
from numbind.registry.pki import CertificateAuthority
from numbind.registry.services.admin import AdminService
from numbind.registry.services.bindings import BindingService
from numbind.registry.services.directory import Directory
from numbind.registry.services.feed import FeedService
from numbind.registry.services.holders import HolderService
from numbind.registry.services.lifecycle import LifecycleService
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokens import TokenService
from numbind.registry.storage import migrate
from numbind.registry.storage.db import Database

log = logging.getLogger(__name__)


@dataclass
class Registry:
    settings: Settings
    db: Database
    directory: Directory
    keys: KeyRing
    tokens: TokenService
    admin: AdminService
    bindings: BindingService
    lifecycle: LifecycleService
    holders: HolderService
    feed: FeedService
    ca_pem: bytes
    # Set when the server begins to stop: long-lived streams end on it.
    stopping: asyncio.Event

    @classmethod
    def open(cls, settings: Settings, *, migrate_schema: bool = True) -> Registry:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url)
        if migrate_schema:
            before, after = migrate.upgrade(db.write_engine)
            if before != after:
                log.info("schema migrated from %s to %s", before, after)
        keys = KeyRing(db, settings.keys_dir)
        keys.ensure_active()
        q = settings.quota
        quotas = Quotas(q.rate_per_second, q.burst, q.daily_cap)
        directory = Directory(db)
        notifier = FeedNotifier()
        stopping = asyncio.Event()
        # The CA key may live elsewhere (offline CA); remote registration then is refused.
        ca = (
            CertificateAuthority.load(settings.pki_dir)
            if (settings.pki_dir / "ca.key").exists()
            else None
        )
        return cls(
            settings=settings,
            db=db,
            directory=directory,
            keys=keys,
            tokens=TokenService(db, keys, quotas, settings.workers),
            admin=AdminService(db, keys, directory, ca),
            bindings=BindingService(db, keys),
            lifecycle=LifecycleService(db, keys, notifier, settings.order_deadline_seconds),
            holders=HolderService(
                db, notifier, settings.order_deadline_seconds, settings.attestation_policy
            ),
            feed=FeedService(
                db,
                notifier,
                stopping,
                heartbeat_seconds=settings.heartbeat_seconds,
                visibility_timeout_seconds=settings.visibility_timeout_seconds,
            ),
            stopping=stopping,
            ca_pem=(settings.pki_dir / "ca.pem").read_bytes(),
        )

    def close(self) -> None:
        self.tokens.close()
        self.db.close()
