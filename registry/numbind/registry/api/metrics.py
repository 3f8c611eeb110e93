"""Prometheus metrics for one registry process (`numbind serve --metrics-listen H:P`).

Every process serves its own /metrics; Prometheus scrapes each (they are not summed
here). RPCs are counted and timed by an interceptor, by method and final status code;
everything else is read when scraped: from this process (quota refusals, change
notifications heard) and from the store (open orders and feed lag per platform, the
store re-key; at most once a second, however often or concurrently scraped). Store-wide
figures are the same on every process: take one of them (max by platform) rather than
summing.

Each process has its own CollectorRegistry, so several registries in one Python process
(tests) do not collide. The endpoint is plain, unauthenticated HTTP and answers GET and HEAD
of /metrics only.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from threading import Lock, Thread
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import grpc
from numbind.registry.api.interceptors import GuardInterceptor
from numbind.registry.api.types import Ctx
from numbind.registry.storage.ops import OpsSnapshot
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
# How long one reading of the store serves every scrape (they queried it each time: 400
# scrapes, 60 at once, made an unrelated tokenize call 10x slower).
SNAPSHOT_MAX_AGE_SECONDS = 1.0


@dataclass(frozen=True)
class ProcessCounters:
    """This process's own counts, read at scrape time."""

    # By principal: (role, name).
    quota_refusals: Mapping[tuple[str, str], int]
    # Acks recorded, by (platform, outcome).
    ack_outcomes: Mapping[tuple[str, str], int]
    notifications_heard: int
    poll_wakes: int
    listening: bool


class StoreUnreadable(Exception):
    """The store did not answer the latest reading (shared like a reading)."""


class SharedSnapshot:
    """The store's figures read at most once per `max_age` seconds, one reading at a time:
    scrapes that arrive while one reads wait for it, and scrapes within `max_age` of the
    last reading (or failure to read) take it."""

    def __init__(
        self,
        read: Callable[[], OpsSnapshot],
        max_age: float = SNAPSHOT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._lock = Lock()
        self._at = -float("inf")
        self._last: OpsSnapshot | str = ""

    def __call__(self) -> OpsSnapshot:
        with self._lock:
            if self._clock() - self._at >= self._max_age:
                try:
                    self._last = self._read()
                except Exception as exc:  # a store down is not asked again by every scrape
                    self._last = str(exc) or type(exc).__name__
                self._at = self._clock()  # when it was read: waiters take it
            last = self._last
        if isinstance(last, str):
            raise StoreUnreadable(last)
        return last


class _StoreCollector(Collector):
    def __init__(
        self, snapshot: Callable[[], OpsSnapshot], counters: Callable[[], ProcessCounters]
    ) -> None:
        self._snapshot = SharedSnapshot(snapshot)
        self._counters = counters

    def describe(self) -> Iterable[Metric]:
        # The names, for the registry's checks, without reading the store: auto_describe
        # would collect(), and a reading taken at start would then serve the first scrapes.
        idle = ProcessCounters(
            quota_refusals={},
            ack_outcomes={},
            notifications_heard=0,
            poll_wakes=0,
            listening=False,
        )
        return _families(idle, OpsSnapshot(feeds=[], rekey=None))

    def collect(self) -> Iterable[Metric]:
        c = self._counters()
        try:
            snap: OpsSnapshot | None = self._snapshot()
        except Exception as exc:  # the store is down: say so, keep the process metrics
            log.warning("metrics: store unreadable: %s", exc)
            snap = None
        return _families(c, snap)


def _families(c: ProcessCounters, snap: OpsSnapshot | None) -> Iterator[Metric]:
    # Counts since this process started: counters, so rate() and increase() read them.
    refusals = CounterMetricFamily(
        "numbind_quota_refusals",
        "Token calls refused for quota by this process, by caller (role and name)",
        labels=["role", "principal"],
    )
    for (role, name), n in sorted(c.quota_refusals.items()):
        refusals.add_metric([role, name], n)
    yield refusals
    outcomes = CounterMetricFamily(
        "numbind_order_outcomes",
        "Orders acked through this process, by platform and the outcome it acked "
        "(unbound, already_gone, rejected; noted for a notice)",
        labels=["platform", "outcome"],
    )
    for (platform, outcome), n in sorted(c.ack_outcomes.items()):
        outcomes.add_metric([platform, outcome], n)
    yield outcomes
    yield CounterMetricFamily(
        "numbind_change_notifications",
        "Change notifications heard from the store (LISTEN/NOTIFY) by this process",
        value=c.notifications_heard,
    )
    yield CounterMetricFamily(
        "numbind_change_poll_wakes",
        "Feed polls that found a change the notifications had not delivered (should stay near 0)",
        value=c.poll_wakes,
    )
    yield _gauge(
        "numbind_change_listener_up",
        "1 while this process listens for changes made by others (PostgreSQL), else 0",
        int(c.listening),
    )
    if snap is None:
        yield _gauge("numbind_store_up", "1 if the store answered this scrape", 0)
        return
    yield _gauge("numbind_store_up", "1 if the store answered this scrape", 1)
    now = time.time()
    lag = GaugeMetricFamily(
        "numbind_feed_lag_seconds",
        "Age of the platform's oldest unacked order (0: nothing open)",
        labels=["platform"],
    )
    opened = GaugeMetricFamily(
        "numbind_orders_open",
        "Unacked orders by platform and state (pending: not yet sent; delivered: sent, "
        "not acked; overdue: past the deadline)",
        labels=["platform", "state"],
    )
    head = GaugeMetricFamily(
        "numbind_feed_head", "The platform's latest feed sequence", labels=["platform"]
    )
    for f in snap.feeds:
        age = 0.0 if f.oldest_open_us is None else max(0.0, now - f.oldest_open_us / 1e6)
        lag.add_metric([f.platform], age)
        head.add_metric([f.platform], f.feed_head)
        for state, n in (
            ("pending", f.pending),
            ("delivered", f.delivered),
            ("overdue", f.overdue),
        ):
            opened.add_metric([f.platform, state], n)
    yield lag
    yield opened
    yield head
    r = snap.rekey
    running = r is not None and r.running
    yield _gauge("numbind_rekey_running", "1 while a store re-key runs", int(running))
    done = GaugeMetricFamily(
        "numbind_rekey_rows", "Rows of the latest store re-key", labels=["what"]
    )
    if r is not None:
        done.add_metric(["done"], r.rows_done)
        if r.rows_total is not None:  # absent while the rows are still being counted
            done.add_metric(["total"], r.rows_total)
    yield done


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(
        self, snapshot: Callable[[], OpsSnapshot], counters: Callable[[], ProcessCounters]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter(
            "numbind_rpc",
            "RPCs served, by method and final status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "numbind_rpc_seconds",
            "RPC duration by method and final status (for streams: how long they stayed open)",
            ["method", "code"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(snapshot, counters))
        self._server: Any = None
        self._thread: Thread | None = None
        self.port = 0

    def interceptor(self) -> GuardInterceptor:
        """Give it to the server first: outside the error map, it sees final statuses."""
        return GuardInterceptor(self._measured)

    @asynccontextmanager
    async def _measured(self, method: str, context: Ctx) -> AsyncIterator[None]:
        started = time.perf_counter()
        code = "OK"
        try:
            yield
        except grpc.aio.AbortError:
            code = _code_name(context)
            raise
        except BaseException:  # cancelled by the client, or the server stopping
            code = "CANCELLED"
            raise
        finally:
            short = method.rsplit("/", 1)[-1] if method.startswith("/numbind.") else method
            self.rpcs.labels(short, code).inc()
            self.latency.labels(short, code).observe(time.perf_counter() - started)

    def serve(self, listen: str) -> int:
        """Start the /metrics HTTP endpoint in a thread; returns the port it listens on."""
        host, _, port = listen.rpartition(":")
        try:
            self._server, self._thread = _start(
                host.strip("[]"), int(port), _only_metrics(make_wsgi_app(self.registry))
            )
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            raise OSError(f"--metrics-listen {listen}: {why}") from None
        self.port = int(self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _only_metrics(app: WSGIApplication) -> WSGIApplication:
    """prometheus_client's app answers any path (/, /foo, /favicon.ico) and no HEAD: only
    GET and HEAD of /metrics answer here, anything else at /metrics is 405, elsewhere 404."""

    def routed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _refuse(start_response, "404 Not Found", [], b"not found; see /metrics\n")
        method = environ.get("REQUEST_METHOD")
        if method == "GET":
            return app(environ, start_response)
        if method != "HEAD":
            allow = [("Allow", "GET, HEAD")]
            return _refuse(start_response, "405 Method Not Allowed", allow, b"use GET\n")
        # HEAD: GET's status and headers (its length too), no body.
        got: list[tuple[str, list[tuple[str, str]]]] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            got.append((status, headers))
            return lambda _: None

        length = len(b"".join(app({**environ, "REQUEST_METHOD": "GET"}, keep)))
        status, headers = got[-1]
        start_response(status, [*headers, ("Content-Length", str(length))])
        return []

    return routed


def _refuse(
    start_response: StartResponse, status: str, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers])
    return [body]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (as prometheus_client's own server does)."""


def _start(host: str, port: int, app: WSGIApplication) -> tuple[WSGIServer, Thread]:
    """What prometheus_client's start_http_server does, with our app: a threaded wsgiref
    server in a daemon thread, of the address family `host` resolves to."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):  # prometheus_client's: daemon threads
        address_family = family

    httpd = make_server(str(sockaddr[0]), port, app, Server, handler_class=_Quiet)
    thread = Thread(target=httpd.serve_forever, name="numbind-metrics", daemon=True)
    thread.start()
    return httpd, thread


def _code_name(context: Ctx) -> str:
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return str(status.name)
    return "UNKNOWN"


def otel_interceptors(enabled: bool) -> list[grpc.aio.ServerInterceptor]:
    """OpenTelemetry's gRPC server interceptor when asked for. Its spans go to the process's
    tracer provider: the one already set (`opentelemetry-instrument`, or the program that
    embeds the registry), else one configured here from the standard `OTEL_*` environment
    variables. Off by default: nothing is imported, nothing is sent."""
    if not enabled:
        return []
    try:
        from opentelemetry import trace
        from opentelemetry.distro import OpenTelemetryConfigurator
        from opentelemetry.instrumentation.grpc import (
            GrpcAioInstrumentorServer,
            aio_server_interceptor,
        )
    except ImportError:
        raise ValueError(
            "otel: OpenTelemetry is not installed; pip install 'numbind[otel]'"
        ) from None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # No provider: the API would drop every span. Configure the SDK as
        # opentelemetry-instrument does, with the same configurator. The traces exporter
        # defaults to otlp, as the specification and opentelemetry-distro say (the SDK alone
        # would export nothing); metrics and logs stay as their variables say.
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        try:
            OpenTelemetryConfigurator().configure()  # type: ignore[no-untyped-call]
        except RuntimeError as exc:  # an exporter, sampler or protocol not installed
            raise ValueError(
                f"otel: {exc} (OTEL_TRACES_EXPORTER={os.environ['OTEL_TRACES_EXPORTER']}; "
                "otlp comes with pip install 'numbind[otel]', console and none need nothing)"
            ) from None
    if GrpcAioInstrumentorServer().is_instrumented_by_opentelemetry:  # type: ignore[no-untyped-call]
        # opentelemetry-instrument patched grpc.aio.server to add this very interceptor: a
        # second one would record every RPC twice.
        return []
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor()  # type: ignore[no-untyped-call]
    return [interceptor]
