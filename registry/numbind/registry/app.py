"""The composition root: builds the store, key ring and services from Settings, once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

from numbind.protocol.manifest import FederationSetupError
from numbind.protocol.manifest import TokenService as ManifestTokens
from numbind.registry import log_key
from numbind.registry.config import Settings
from numbind.registry.datadir import private_umask, require_private
from numbind.registry.domain.quota import Quotas
from numbind.registry.domain.types import KeyState, now_us
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.fanout_client import ManifestMembers
from numbind.registry.federation.files import Installed
from numbind.registry.federation.forward import ForwardedTokens
from numbind.registry.federation.live import ManifestWatch, key_signer
from numbind.registry.federation.log_trust import LiveManifest
from numbind.registry.federation.serving import Serving
from numbind.registry.keys import KeyRing
from numbind.registry.pki import CertificateAuthority
from numbind.registry.services.admin import AdminService
from numbind.registry.services.bindings import BindingService
from numbind.registry.services.changes import Changes
from numbind.registry.services.directory import Directory
from numbind.registry.services.fanout import FederatedHolders, NoMembers, RetryPolicy
from numbind.registry.services.feed import FeedService
from numbind.registry.services.holder_views import UNNAMED, RegistryName
from numbind.registry.services.holders import HolderService
from numbind.registry.services.lifecycle import LifecycleService
from numbind.registry.services.log import LogService
from numbind.registry.services.member_holders import MemberHolderService
from numbind.registry.services.notifier import LOG_CHANNEL, FeedNotifier
from numbind.registry.services.planner_stats import StatisticsKeeper
from numbind.registry.services.rekey import RekeyRunner, RekeySettings
from numbind.registry.services.replication import HubLog, Replica
from numbind.registry.services.standing import StandingService
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.services.tokens import QuotaGate, TokenService, TokenSource
from numbind.registry.storage import keymap, migrate, ops, principals, token_keys
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.ops import OpsSnapshot
from numbind.registry.workers import CryptoWorkers

log = logging.getLogger(__name__)


@dataclass
class Registry:
    settings: Settings
    db: Database
    directory: Directory
    keys: KeyRing
    tokens: TokenSource
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
    log: LogService
    # The hook for changes of standing made elsewhere (StandingService.changed).
    standing: StandingService
    token_map: TokenMapper
    rekeyer: RekeyRunner
    # Changes made by other processes sharing the store (PostgreSQL LISTEN/NOTIFY + polls).
    changes: Changes
    quota_gate: QuotaGate
    # Worker processes for CPU-bound crypto: token evaluation and the store re-key.
    pool: CryptoWorkers
    ca_pem: bytes
    # Set when the server begins to stop: long-lived streams end on it.
    stopping: asyncio.Event
    # The installed federation (None: a federation of one, every role here), and one
    # mTLS channel per peer registry.
    federation: Serving | None = None
    peers: PeerChannels | None = None
    # The lifecycle log as members read it (served by the lifecycle authority).
    hub_log: HubLog | None = None
    # A member's replica of the hub's lifecycle log (None at the hub, or alone).
    replica: Replica | None = None
    # The planner's statistics of fast-growing tables (None on SQLite, which has none).
    planner_stats: StatisticsKeeper | None = None

    @classmethod
    def open(
        cls, settings: Settings, *, migrate_schema: bool = True, partitions: int | None = None
    ) -> Registry:
        """Refuses (ExposedDataDir) a data dir that group or others can read. `partitions`
        as in storage.migrate.upgrade."""
        with private_umask():
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            require_private(settings.data_dir)
            return cls._open(settings, migrate_schema=migrate_schema, partitions=partitions)

    @classmethod
    def _open(cls, settings: Settings, *, migrate_schema: bool, partitions: int | None) -> Registry:
        federation = Serving.load(settings.data_dir)
        db = open_database(settings)
        if migrate_schema:
            before, after = migrate.upgrade(db.write_engine, partitions=partitions)
            if before != after:
                log.info("schema migrated from %s to %s", before, after)
        if federation is not None:
            sync_peer_principals(db, federation.installed)
        # A member holds no token key: the federation's token service (the hub) does, and
        # its keys and deltas reach this store through the manifest and replication.
        member = federation is not None and not federation.is_token_service
        keys = KeyRing(db, settings.keys_dir, secrets=not member)
        if federation is not None and member:
            adopt_federation_keys(db, federation.installed.manifest.token_service)
        keys.ensure_active()
        if not member:
            reconcile_key_map(db, keys)
        q = settings.quota
        quotas = Quotas(q.rate_per_second, q.burst, q.daily_cap)
        directory = Directory(db, ttl=settings.change_poll_seconds)
        notifier = FeedNotifier()
        standing = StandingService(db, directory, notifier)
        stopping = asyncio.Event()
        token_map = TokenMapper(db)
        pool = CryptoWorkers(settings.workers)
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
        changes = Changes(
            db, notifier, standing, token_map, poll_seconds=settings.change_poll_seconds
        )
        changes.on_keys = [rekeyer.wake, keys.expire]
        peers = (
            None
            if federation is None
            else PeerChannels(federation.files, federation.installed.manifest.members)
        )
        # One gate: its refusals are this process's, whichever way tokens are served.
        gate = QuotaGate(db, quotas)
        tokens: TokenSource = TokenService(db, keys, gate, pool)
        if federation is not None and peers is not None and member:
            ts = federation.token_service
            if ts is None:
                raise FederationSetupError(
                    "the manifest names no member as token service; a member cannot forward "
                    "its platforms' tokenisation"
                )
            tokens = ForwardedTokens(federation.files, peers, ts.id, gate)
        report_at = None
        if federation is not None and not federation.is_authority:
            hub = federation.hub
            report_at = (
                f"this registry is member {federation.me.id} of federation "
                f"{federation.federation}; carriers report lifecycle events to its lifecycle "
                f"authority {hub.id} at {hub.address}"
            )
        lifecycle = LifecycleService(
            db,
            token_map,
            notifier,
            settings.order_deadline_seconds,
            report_at=report_at,
            federated=federation is not None and federation.is_authority,
            apply_chunk=settings.apply_chunk_events,
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
        admin = AdminService(db, keys, directory, ca, token_map, rekeyer, standing)
        signer = key_signer(federation, keys, lambda: notifier.notify([LOG_CHANNEL]))
        if signer is not None:
            admin.on_keys_changed.append(signer)
        return cls(
            settings=settings,
            db=db,
            directory=directory,
            keys=keys,
            tokens=tokens,
            admin=admin,
            bindings=BindingService(db, token_map, notifier, settings.order_deadline_seconds),
            lifecycle=lifecycle,
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
                standing,
                heartbeat_seconds=settings.heartbeat_seconds,
                visibility_timeout_seconds=settings.visibility_timeout_seconds,
                max_streams_per_principal=settings.max_streams_per_principal,
            ),
            log=LogService(
                db,
                log_key.load_or_create(
                    settings.data_dir,
                    installed=federation.installed if federation is not None else None,
                ),
                settings.witness_keys,
                (
                    LiveManifest(federation.files, federation.installed.signed)
                    if federation is not None
                    else lambda: None
                ),
            ),
            standing=standing,
            token_map=token_map,
            rekeyer=rekeyer,
            changes=changes,
            quota_gate=gate,
            pool=pool,
            stopping=stopping,
            ca_pem=(settings.pki_dir / "ca.pem").read_bytes(),
            federation=federation,
            peers=peers,
            hub_log=HubLog(db, notifier),
            replica=(
                Replica(db, token_map, lifecycle, federation.hub.id, rekeyer.wake)
                if federation is not None and not federation.is_authority
                else None
            ),
            planner_stats=None if db.is_sqlite else StatisticsKeeper(db),
        )

    def manifest_watch(self) -> ManifestWatch | None:
        """What follows a newer installed manifest in this running registry (None: no
        federation): peer principals, peer channels, the hub's fan-out members, and a
        wake-up for the members' streams (they carry the manifest)."""
        if self.federation is None:
            return None
        db, directory, peers, members = self.db, self.directory, self.peers, self.members

        def principals_of(installed: Installed) -> None:
            sync_peer_principals(db, installed)
            directory.invalidate()

        def channels(installed: Installed) -> None:
            if peers is not None:
                peers.update(installed.manifest.members)
            if members is not None:
                members.refresh(installed)
            self.lifecycle.notify([])

        return ManifestWatch(self.federation.files, [principals_of, channels])

    def ops_snapshot(self) -> OpsSnapshot:
        """Open orders, feed lag and the re-key, for a metrics scrape (blocking)."""
        return self.db.transact(lambda s: ops.snapshot(s, now_us()), write=False)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.db.close()


def open_database(settings: Settings) -> Database:
    """The store `settings` name, as every command that opens it from settings must."""
    return Database(
        settings.effective_database_url,
        synchronous=settings.sqlite_synchronous,
        notify=settings.change_notify,
        write_threads=settings.db_write_threads,
        idle_timeout_seconds=settings.db_idle_timeout_seconds,
    )


def sync_peer_principals(db: Database, installed: Installed) -> None:
    """The manifest's registries as principals (at start and at each new manifest)."""
    names = {m.id: m.name for m in installed.manifest.members}
    db.transact(lambda s: principals.sync_registries(s, names))


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


def adopt_federation_keys(db: Database, ts: ManifestTokens) -> None:
    """A member's store takes the federation's token keys from the manifest, the first
    time it serves as a member (its own key from `admin init` is dropped while nothing is
    stored under it); afterwards replication keeps them current."""

    def tx(session: Session) -> None:
        held = {k.key_id for k in token_keys.all_keys(session)}
        if held & {k.key_id for k in ts.keys}:
            return
        token_keys.sync(
            session,
            [
                (
                    k.key_id,
                    k.public_key,
                    KeyState.ACTIVE if k.key_id == ts.active_key_id else KeyState.EVALUATE_ONLY,
                    0,
                )
                for k in ts.keys
            ],
        )
        keymap.adopt_store_key(session, ts.active_key_id)

    db.transact(tx)
