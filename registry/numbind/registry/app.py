"""The composition root: builds the store, key ring and services from Settings, once."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

from numbind.registry.config import Settings
from numbind.registry.domain.quota import Quotas
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.fanout_client import ManifestMembers
from numbind.registry.federation.serving import Serving
from numbind.registry.keys import KeyRing
from numbind.registry.pki import CertificateAuthority
from numbind.registry.services.admin import AdminService
from numbind.registry.services.bindings import BindingService
from numbind.registry.services.directory import Directory
from numbind.registry.services.fanout import FederatedHolders, NoMembers, RetryPolicy
from numbind.registry.services.feed import FeedService
from numbind.registry.services.holder_views import UNNAMED, RegistryName
from numbind.registry.services.holders import HolderService
from numbind.registry.services.lifecycle import LifecycleService
from numbind.registry.services.member_holders import MemberHolderService
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.rekey import RekeyRunner, RekeySettings
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.services.tokens import TokenService
from numbind.registry.storage import keymap, migrate, principals
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
    # The holder calls as the Holders service answers them: fanned out to the members at
    # a federation's hub, local in a federation of one.
    federated: FederatedHolders
    # A member's answers to its hub's fan-out (MemberHolders service).
    member_holders: MemberHolderService
    # The binding registries a hub fans out to (None: not a hub of a federation).
    members: ManifestMembers | None
    feed: FeedService
    token_map: TokenMapper
    rekeyer: RekeyRunner
    # Worker processes for CPU-bound crypto: token evaluation and the store re-key.
    pool: ProcessPoolExecutor
    ca_pem: bytes
    # Set when the server begins to stop: long-lived streams end on it.
    stopping: asyncio.Event
    # The installed federation (None: a federation of one, every role here), and one
    # mTLS channel per peer registry.
    federation: Serving | None = None
    peers: PeerChannels | None = None

    @classmethod
    def open(cls, settings: Settings, *, migrate_schema: bool = True) -> Registry:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        federation = Serving.load(settings.data_dir)
        db = Database(settings.effective_database_url)
        if migrate_schema:
            before, after = migrate.upgrade(db.write_engine)
            if before != after:
                log.info("schema migrated from %s to %s", before, after)
        if federation is not None:
            names = {m.id: m.name for m in federation.installed.manifest.members}
            db.transact(lambda s: principals.sync_registries(s, names))
        keys = KeyRing(db, settings.keys_dir)
        keys.ensure_active()
        reconcile_key_map(db, keys)
        q = settings.quota
        quotas = Quotas(q.rate_per_second, q.burst, q.daily_cap)
        directory = Directory(db)
        notifier = FeedNotifier()
        stopping = asyncio.Event()
        token_map = TokenMapper(db)
        pool = ProcessPoolExecutor(
            max_workers=settings.workers, mp_context=multiprocessing.get_context("spawn")
        )
        rekeyer = RekeyRunner(
            db,
            token_map,
            pool,
            RekeySettings(
                batch_rows=settings.rekey_batch_rows,
                pause_seconds=settings.rekey_pause_seconds,
                lease_seconds=settings.rekey_lease_seconds,
                in_flight=settings.workers + 1,
            ),
        )
        # The CA key may live elsewhere (offline CA); remote registration then is refused.
        ca = (
            CertificateAuthority.load(settings.pki_dir)
            if (settings.pki_dir / "ca.key").exists()
            else None
        )
        peers = (
            None
            if federation is None
            else PeerChannels(federation.files, federation.installed.manifest.members)
        )
        me = federation.me if federation is not None else None
        registry_name = RegistryName(me.id, me.name) if me is not None else UNNAMED
        members: ManifestMembers | None = None
        if federation is not None and peers is not None and federation.is_authority:
            members = ManifestMembers(federation.installed, lambda m: peers.get(m.id))
        holds_bindings = me is None or "binding-registry" in me.roles or members is None
        holders = HolderService(
            db,
            token_map,
            notifier,
            settings.order_deadline_seconds,
            settings.attestation_policy,
            local_bindings=holds_bindings,
            remote_members=(lambda: members.member_ids) if members is not None else (lambda: ()),
            registry=registry_name,
        )
        federated = FederatedHolders(
            db,
            holders,
            members if members is not None else NoMembers(),
            settings.fanout_deadline_seconds,
            RetryPolicy(max_seconds=settings.fanout_retry_max_seconds),
        )
        return cls(
            settings=settings,
            db=db,
            directory=directory,
            keys=keys,
            tokens=TokenService(db, keys, quotas, pool),
            admin=AdminService(db, keys, directory, ca, token_map, rekeyer),
            bindings=BindingService(db, token_map),
            lifecycle=LifecycleService(db, token_map, notifier, settings.order_deadline_seconds),
            holders=holders,
            federated=federated,
            member_holders=MemberHolderService(
                token_map, notifier, settings.order_deadline_seconds, registry_name
            ),
            members=members,
            feed=FeedService(
                db,
                token_map,
                notifier,
                stopping,
                heartbeat_seconds=settings.heartbeat_seconds,
                visibility_timeout_seconds=settings.visibility_timeout_seconds,
            ),
            token_map=token_map,
            rekeyer=rekeyer,
            pool=pool,
            stopping=stopping,
            ca_pem=(settings.pki_dir / "ca.pem").read_bytes(),
            federation=federation,
            peers=peers,
        )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.db.close()


def reconcile_key_map(db: Database, keys: KeyRing) -> None:
    """Hand the store what it needs from the token service, if anything is missing: the
    store key of a fresh store, and the delta of a live older key (a store migrated from
    before deltas existed). Both sides meet only here and in AdminService.rotate_key."""
    active = keys.active().key_id
    db.transact(lambda s: keymap.ensure_store_key(s, active))
    store_key, missing = db.transact(keymap.keys_without_delta, write=False)
    for key_id in missing:
        delta = keys.delta(key_id, store_key)
        db.transact(partial(keymap.put_delta, key_id=key_id, to_key_id=store_key, delta=delta))
        log.info("key map: delta for %s -> %s handed to the store", key_id, store_key)
