"""The grpc.aio server: mTLS always on, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from numbind.protocol.limits import MAX_MESSAGE_BYTES, MAX_RECEIVE_BYTES
from numbind.registry import log_key
from numbind.registry.api.admin import AdminServicer
from numbind.registry.api.auth import AuthInterceptor
from numbind.registry.api.carriers import CarriersServicer
from numbind.registry.api.errors import error_interceptor
from numbind.registry.api.federation import FederationServicer
from numbind.registry.api.holders import HoldersServicer
from numbind.registry.api.log import LogServicer
from numbind.registry.api.member_holders import MemberHoldersServicer
from numbind.registry.api.metrics import Metrics, ProcessCounters, otel_interceptors
from numbind.registry.api.platforms import PlatformsServicer
from numbind.registry.api.sizes import RequestSizeInterceptor
from numbind.registry.api.tokens import TokensServicer
from numbind.registry.app import Registry
from numbind.registry.config import forget_served_address, record_served_address
from numbind.registry.federation.follower import Follower
from numbind.registry.federation.live import ServerRoots
from numbind.registry.federation.serving import Serving
from numbind.registry.federation.witness import GrpcLogSource
from numbind.registry.federation.witnessing import PeerLogWitnesses
from numbind.registry.server_cert import load_server_pair
from numbind.registry.storage.lock import StoreLock
from numbind.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    carriers_pb2,
    carriers_pb2_grpc,
    fanout_pb2,
    fanout_pb2_grpc,
    federation_pb2,
    federation_pb2_grpc,
    holders_pb2,
    holders_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = [
    tokens_pb2.DESCRIPTOR.services_by_name["Tokens"].full_name,
    platforms_pb2.DESCRIPTOR.services_by_name["Platforms"].full_name,
    carriers_pb2.DESCRIPTOR.services_by_name["Carriers"].full_name,
    holders_pb2.DESCRIPTOR.services_by_name["Holders"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    log_pb2.DESCRIPTOR.services_by_name["Log"].full_name,
    fanout_pb2.DESCRIPTOR.services_by_name["MemberHolders"].full_name,
    federation_pb2.DESCRIPTOR.services_by_name["Federation"].full_name,
]
MAX_MESSAGE = MAX_MESSAGE_BYTES


def server_credentials(pki_dir: Path, federation: Serving | None = None) -> grpc.ServerCredentials:
    """Server cert + key; client certificates must chain to the registry CA or, in a
    federation, to a member's CA named in the manifest installed at the handshake (any
    other CA fails it; a member added while serving counts at once). Which identities
    each CA may vouch for is the auth interceptor's check."""
    if federation is not None:
        return ServerRoots(pki_dir, federation.files, federation.installed).credentials()
    own_ca = (pki_dir / "ca.pem").read_bytes()
    return grpc.ssl_server_credentials(
        [load_server_pair(pki_dir)],
        root_certificates=own_ca,
        require_client_auth=True,
    )


def _no_bindings(fed: Serving | None) -> str | None:
    if fed is None or fed.holds_bindings:
        return None
    return (
        f"this registry ({fed.me.id}) holds no bindings in federation {fed.federation}: "
        "platforms publish, sync and read their feeds at their binding registry"
    )


def _federation_servicer(registry: Registry) -> FederationServicer:
    fed = registry.federation
    assert registry.hub_log is not None
    not_authority = None
    if fed is None:
        not_authority = "this registry is in no federation"
    elif not fed.is_authority:
        not_authority = (
            f"this registry is member {fed.me.id}; the lifecycle log is served by the "
            f"lifecycle authority {fed.hub.id} at {fed.hub.address}"
        )

    def manifest() -> bytes:
        # The live manifest (re-read only when its file changes): this runs for every batch
        # and heartbeat of every member's stream.
        held = registry.log.manifest()
        return b"" if held is None else held.data

    return FederationServicer(
        registry.hub_log,
        registry.stopping,
        "" if fed is None else fed.federation,
        manifest,
        not_authority,
    )


class RegistryServer:
    def __init__(self, registry: Registry, store_lock: StoreLock | None = None) -> None:
        self.registry = registry
        self.health = health.aio.HealthServicer()
        self.metrics = Metrics(registry.ops_snapshot, self._counters)
        # Outermost first: errors from sizes and authentication are mapped like any other,
        # and metrics (outside the error map) see the status it gave.
        interceptors: list[grpc.aio.ServerInterceptor] = [
            *otel_interceptors(registry.settings.otel),
            self.metrics.interceptor(),
            error_interceptor(),
        ]
        receive = MAX_MESSAGE
        if registry.settings.request_limits:
            interceptors.append(RequestSizeInterceptor())
            receive = MAX_RECEIVE_BYTES
        interceptors.append(
            AuthInterceptor(
                registry.directory,
                None
                if registry.federation is None
                else registry.federation.callers(registry.ca_pem),
                no_bindings=_no_bindings(registry.federation),
            )
        )
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", receive),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # gRPC sets SO_REUSEPORT by default on Linux: a second process given the
                # same --listen would bind beside the first and take half its connections
                # (two registries answering one address, each with its own certificate).
                ("grpc.so_reuseport", 0),
            ],
        )
        tokens_pb2_grpc.add_TokensServicer_to_server(TokensServicer(registry.tokens), self.server)
        platforms_pb2_grpc.add_PlatformsServicer_to_server(
            PlatformsServicer(registry.bindings, registry.feed, registry.lifecycle), self.server
        )
        carriers_pb2_grpc.add_CarriersServicer_to_server(
            CarriersServicer(registry.lifecycle), self.server
        )
        holders_pb2_grpc.add_HoldersServicer_to_server(
            HoldersServicer(registry.federated), self.server
        )
        fed = registry.federation
        fanout_pb2_grpc.add_MemberHoldersServicer_to_server(
            MemberHoldersServicer(
                registry.member_holders,
                lambda: fed.hub.id if fed is not None else None,
            ),
            self.server,
        )
        admin_pb2_grpc.add_AdminServicer_to_server(
            AdminServicer(registry.admin, registry.ca_pem), self.server
        )
        log_pb2_grpc.add_LogServicer_to_server(LogServicer(registry.log), self.server)
        federation_pb2_grpc.add_FederationServicer_to_server(
            _federation_servicer(registry), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = 0
        self.address = ""  # host:port once serving (--listen's host, the bound port)
        self._stopped = False
        self._store_lock = store_lock or StoreLock.for_url(registry.db.url)
        self._publisher: asyncio.Task[None] | None = None
        self._witness: asyncio.Task[None] | None = None
        self._fanout_retries: asyncio.Task[None] | None = None
        self._manifest_watch: asyncio.Task[None] | None = None
        self._applier: asyncio.Task[None] | None = None
        self._planner_stats: asyncio.Task[None] | None = None
        fed = registry.federation
        self.follower = (
            Follower(registry.replica, registry.peers, fed.hub.id, fed.files, registry.stopping)
            if fed is not None and registry.replica is not None and registry.peers is not None
            else None
        )

    async def start(self) -> int:
        settings = self.registry.settings
        if self._store_lock is not None:
            self._store_lock.acquire()  # SQLite: refuse a second serving process
        credentials = server_credentials(settings.pki_dir, self.registry.federation)
        try:
            self.port = self.server.add_secure_port(settings.listen, credentials)
        except RuntimeError:  # grpcio's "Failed to bind to address": say which and why
            self.port = 0
        if self.port == 0:
            raise OSError(
                f"--listen {settings.listen}: cannot bind (in use by another process, "
                "or not an address of this host)"
            )
        if settings.metrics_listen is not None:
            # Before the gRPC server starts: a started one left behind by a failure here
            # complains at exit (its __del__ needs the closed event loop).
            self.metrics.serve(settings.metrics_listen)
        await self.server.start()
        # An interrupted store re-key resumes now; a new one starts at rotation.
        self.registry.rekeyer.start()
        self.registry.changes.start()
        self._publisher = asyncio.create_task(
            self.registry.log.run(self.registry.stopping, settings.log_checkpoint_seconds),
            name="numbind-log-checkpoints",
        )
        self._witness = start_witness(self.registry)
        applier = self.registry.lifecycle.applier
        if applier is not None:
            # Orders of a report a previous run (or another process) left part-created.
            self._applier = asyncio.create_task(
                applier.run(self.registry.stopping), name="numbind-local-applier"
            )
        keeper = self.registry.planner_stats
        if keeper is not None:
            self._planner_stats = asyncio.create_task(
                keeper.run(self.registry.stopping), name="numbind-planner-stats"
            )
        if self.follower is not None:
            self.follower.start()
        watch = self.registry.manifest_watch()
        if watch is not None:
            # `federation add-member` (or a version replication installed) takes effect
            # in this running registry.
            self._manifest_watch = asyncio.create_task(
                watch.run(self.registry.stopping), name="numbind-manifest-watch"
            )
        if self.registry.members is not None:
            # Revocations members missed while down are delivered when they come back.
            self._fanout_retries = asyncio.create_task(
                self.registry.federated.run_retries(self.registry.stopping)
            )
        for name in ["", *SERVICE_NAMES]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.address = f"{settings.listen.rpartition(':')[0]}:{self.port}"
        record_served_address(settings.data_dir, self.address)
        log.info("registry serving on %s", self.address)
        return self.port

    def _counters(self) -> ProcessCounters:
        changes = self.registry.changes
        return ProcessCounters(
            # Copies: the event loop counts while a scrape's thread reads.
            quota_refusals=dict(self.registry.quota_gate.refusals),
            ack_outcomes=dict(self.registry.feed.outcomes),
            notifications_heard=changes.heard,
            poll_wakes=changes.poll_wakes,
            listening=changes.listening,
        )

    async def stop(self) -> None:
        """Stop accepting, let in-flight calls finish (streams end), close the store.

        Idempotent: a second call (a test helper's cleanup, a second signal) does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.address:
            # Admin commands stop being sent here (another process may have written it since).
            forget_served_address(self.registry.settings.data_dir, self.address)
        await self.health.enter_graceful_shutdown()
        self.registry.stopping.set()
        if self.follower is not None:
            await self.follower.close()
        await self.server.stop(self.registry.settings.shutdown_grace_seconds)
        tasks = (
            self._publisher,
            self._witness,
            self._manifest_watch,
            self._applier,
            self._planner_stats,
        )
        for task in tasks:
            if task is not None:
                await task
        await self.registry.rekeyer.close()
        await self.registry.changes.close()
        self.metrics.close()
        if self._fanout_retries is not None:
            await self._fanout_retries
        if self.registry.peers is not None:
            await self.registry.peers.close()
        self.registry.close()
        if self._store_lock is not None:
            self._store_lock.release()
        log.info("registry stopped")


def start_witness(registry: Registry) -> asyncio.Task[None] | None:
    """Every registry of a federation witnesses every other registry's log the manifest
    names, over its peer channels (DESIGN.md, "A verifiable registry"): members the hub's
    and each other's, the hub each member's. A federation of one witnesses nothing."""
    fed = registry.federation
    peers = registry.peers
    if fed is None or peers is None:
        return None
    witnesses = PeerLogWitnesses(
        registry.db,
        log_key.load_or_create_witness(registry.settings.data_dir, fed.installed),
        registry.log.manifest,
        fed.installed.member_id,
        lambda member_id: GrpcLogSource(peers.get(member_id)),
    )
    return asyncio.create_task(
        witnesses.run(registry.stopping, registry.settings.log_witness_seconds),
        name="numbind-log-witness",
    )


async def serve(
    registry: Registry, ready: asyncio.Event | None = None, store_lock: StoreLock | None = None
) -> None:
    """Run until SIGTERM or SIGINT. `store_lock`: the SQLite store's, if the caller holds it."""
    server = RegistryServer(registry, store_lock)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    print(f"numbind registry listening on {server.address}", flush=True)
    await stop.wait()
    log.info("shutdown requested")
    await server.stop()
