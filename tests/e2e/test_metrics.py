"""Operations: a process's /metrics (Prometheus) and OpenTelemetry spans, both opt-in."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.api.metrics import (
    SNAPSHOT_MAX_AGE_SECONDS,
    Metrics,
    ProcessCounters,
    SharedSnapshot,
    StoreUnreadable,
)
from numbind.registry.config import QuotaSettings
from numbind.registry.domain.keymap import RekeyState, RekeyStatus
from numbind.registry.storage.ops import OpsSnapshot, PlatformFeed
from numbind.registry.testing import running_registry
from numbind.sdk import Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.v1 import tokens_pb2, tokens_pb2_grpc
from prometheus_client import generate_latest

from tests.e2e._story import carrier, days_ago, publish, tokenize

PHONE = "+8613800138000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` from an exposition, whatever order the labels are in."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


async def test_metrics_endpoint_counts_rpcs_orders_lag_and_refusals(tmp_path: Path) -> None:
    port = _free_port()
    quota = QuotaSettings(rate_per_second=1.0, burst=10, daily_cap=1000)
    async with running_registry(
        tmp_path / "data", metrics_listen=f"127.0.0.1:{port}", quota=quota
    ) as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        token = await tokenize(p1, PHONE)
        await publish(p1, token, [(b"acct", days_ago(200))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(1))])
        _, element = voprf.blind(PHONE.encode(), voprf.MODE_VOPRF)
        async with secure_channel(p1) as channel:
            stub = tokens_pb2_grpc.TokensStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):  # 11 > burst: invalid, not quota
                await stub.Evaluate(tokens_pb2.EvaluateRequest(blinded_elements=[element] * 11))
            await stub.Evaluate(tokens_pb2.EvaluateRequest(blinded_elements=[element] * 9))
            with pytest.raises(grpc.aio.AioRpcError):  # the bucket is empty now
                await stub.Evaluate(tokens_pb2.EvaluateRequest(blinded_elements=[element] * 9))
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"http://127.0.0.1:{port}/metrics")
        text = resp.text
        assert resp.status_code == 200
        assert _value(text, "numbind_rpc_total", method="PublishBindings", code="OK") == 1
        assert _value(text, "numbind_rpc_total", method="Evaluate", code="INVALID_ARGUMENT") == 1
        assert _value(text, "numbind_rpc_total", method="Evaluate", code="RESOURCE_EXHAUSTED") == 1
        assert _value(text, "numbind_rpc_seconds_count", method="ReportLifecycle", code="OK") == 1
        assert _value(text, "numbind_quota_refusals_total", role="platform", principal="p1") == 1
        assert _value(text, "numbind_change_notifications_total") >= 0
        assert _value(text, "numbind_change_poll_wakes_total") >= 0
        assert _value(text, "numbind_orders_open", platform="p1", state="pending") == 1
        assert _value(text, "numbind_orders_open", platform="p1", state="overdue") == 0
        assert _value(text, "numbind_feed_lag_seconds", platform="p1") > 0
        assert _value(text, "numbind_feed_head", platform="p1") == 1
        assert _value(text, "numbind_rekey_running") == 0
        assert _value(text, "numbind_store_up") == 1
        # SQLite: one process, nobody else to listen to.
        assert _value(text, "numbind_change_listener_up") == 0
        assert PHONE not in text and PHONE[1:] not in text


def test_process_counts_are_counters() -> None:
    """Counts since the process started are exposed as counters (`_total`), not gauges."""
    counts = ProcessCounters(
        quota_refusals={("platform", "p1"): 3},
        ack_outcomes={},
        notifications_heard=4,
        poll_wakes=5,
        listening=True,
    )
    metrics = Metrics(lambda: OpsSnapshot(feeds=[], rekey=None), lambda: counts)
    lines = generate_latest(metrics.registry).decode().splitlines()
    for name, labels, value in (
        ("numbind_quota_refusals", '{principal="p1",role="platform"}', 3),
        ("numbind_change_notifications", "", 4),
        ("numbind_change_poll_wakes", "", 5),
    ):
        # prometheus_client names a counter's family with or without _total by version.
        assert f"# TYPE {name}_total counter" in lines or f"# TYPE {name} counter" in lines
        assert f"{name}_total{labels} {value:.1f}" in lines, lines
    assert "# TYPE numbind_change_listener_up gauge" in lines, lines


async def test_quota_refusals_are_counted_by_principal(tmp_path: Path) -> None:
    """They were one unlabelled count: nobody could tell whose calls were refused. Names
    are unique per role only, so the role is a label too."""
    port = _free_port()
    quota = QuotaSettings(rate_per_second=0.001, burst=4, daily_cap=1000)
    async with running_registry(
        tmp_path / "data", metrics_listen=f"127.0.0.1:{port}", quota=quota
    ) as reg:
        _, element = voprf.blind(PHONE.encode(), voprf.MODE_VOPRF)
        for bundle, refused in ((reg.add_platform("acme"), 3), (reg.add_carrier("acme"), 1)):
            async with secure_channel(bundle) as channel:
                stub = tokens_pb2_grpc.TokensStub(channel)
                await stub.Evaluate(tokens_pb2.EvaluateRequest(blinded_elements=[element] * 4))
                for _ in range(refused):
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await stub.Evaluate(tokens_pb2.EvaluateRequest(blinded_elements=[element]))
                    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert _value(text, "numbind_quota_refusals_total", role="platform", principal="acme") == 3
    assert _value(text, "numbind_quota_refusals_total", role="carrier", principal="acme") == 1
    assert (
        len([ln for ln in text.splitlines() if ln.startswith("numbind_quota_refusals_total")]) == 2
    )


async def test_no_metrics_endpoint_unless_asked(tmp_path: Path) -> None:
    async with running_registry(tmp_path / "data") as reg:
        assert reg.server.metrics.port == 0


async def test_otel_spans_only_when_configured(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    for enabled in (False, True):
        async with running_registry(tmp_path / f"data{enabled}", otel=enabled) as reg:
            p1 = reg.add_platform("p1")
            async with secure_channel(p1) as channel:
                await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
        names = [s.name for s in exporter.get_finished_spans()]
        if enabled:
            assert "/numbind.v1.Tokens/GetKeys" in names, names
        else:
            assert names == []


def _otel_env(**otel: str) -> dict[str, str]:
    """This process's environment without any NUMBIND_ or OTEL_ setting, plus `otel`; metrics
    and logs exporters off, so nothing is sent anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBIND_", "OTEL_"))}
    return env | {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"} | otel


def _serve(data: Path, port: int, *wrapper: str) -> list[str]:
    return [*wrapper, sys.executable, "-m", "numbind.cli", "serve", "--init", "--otel",
            "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"]  # fmt: skip


@pytest.mark.parametrize("instrumented", [False, True], ids=["alone", "opentelemetry-instrument"])
def test_otel_serve_exports_one_span_per_rpc(tmp_path: Path, instrumented: bool) -> None:
    """`numbind serve --otel` with only OTel's own variables set exports a span per RPC: it
    configures the SDK itself, or under `opentelemetry-instrument` leaves the SDK and the
    gRPC interceptor to it (one span, not two)."""
    pytest.importorskip("opentelemetry.distro", reason="the otel extra is not installed")
    wrapper = [str(Path(sys.executable).parent / "opentelemetry-instrument")] * instrumented
    port = _free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        _serve(data, port, *wrapper),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_otel_env(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="numbind-test"),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = ""
        while "listening on" not in seen:
            assert proc.poll() is None and time.monotonic() < deadline, seen
            seen += proc.stdout.readline()
        admin = Bundle.load(data / operator.ADMIN_BUNDLE)
        with secure_channel(admin, aio=False, target=f"127.0.0.1:{port}") as channel:
            tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)  # the SDK flushes its spans at exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = seen + out
    assert proc.returncode == 0, out
    assert out.count('"name": "/numbind.v1.Tokens/GetKeys"') == 1, out
    assert '"service.name": "numbind-test"' in out, out


def test_otel_names_an_exporter_that_is_not_installed_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.distro", reason="the otel extra is not installed")
    out = subprocess.run(
        _serve(tmp_path / "data", _free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        env=_otel_env(OTEL_TRACES_EXPORTER="nonesuch"),
    )
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    message = out.stderr.splitlines()[-1]  # after --init's log lines
    assert message.startswith("numbind: error: otel: "), message
    assert "'nonesuch'" in message and "numbind[otel]" in message, message


def _rekey_rows(snap: OpsSnapshot) -> dict[str, float]:
    counts = ProcessCounters(
        quota_refusals={}, ack_outcomes={}, notifications_heard=0, poll_wakes=0, listening=True
    )
    text = generate_latest(Metrics(lambda: snap, lambda: counts).registry).decode()
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("numbind_rekey_rows{")
    }


def test_a_rekey_total_not_yet_counted_is_absent_not_a_sentinel() -> None:
    """It read -1 while the re-key was still counting its rows."""
    status = RekeyStatus(
        id=1,
        from_key_id="k1",
        to_key_id="k2",
        state=RekeyState.RUNNING,
        rows_total=None,
        rows_done=7,
        rows_per_second=0.0,
        started_us=1,
        finished_us=None,
    )
    assert _rekey_rows(OpsSnapshot(feeds=[], rekey=status)) == {"done": 7.0}
    counted = dataclasses.replace(status, rows_total=40)
    assert _rekey_rows(OpsSnapshot(feeds=[], rekey=counted)) == {"done": 7.0, "total": 40.0}
    assert _rekey_rows(OpsSnapshot(feeds=[], rekey=None)) == {}


def test_only_metrics_answers() -> None:
    """It answered the metrics at any path: /, /foo, /metrics/, /favicon.ico."""
    counts = ProcessCounters(
        quota_refusals={}, ack_outcomes={}, notifications_heard=0, poll_wakes=0, listening=True
    )
    metrics = Metrics(lambda: OpsSnapshot(feeds=[], rekey=None), lambda: counts)
    port = metrics.serve("127.0.0.1:0")
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base) as http:
            got = http.get("/metrics")
            assert got.status_code == 200 and "numbind_store_up 1.0" in got.text, got.text
            for path in ("/", "/foo", "/metrics/", "/favicon.ico", "/metrics/x"):
                resp = http.get(path)
                assert resp.status_code == 404, path
                assert "numbind_" not in resp.text, path
            head = http.head("/metrics")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
            assert int(head.headers["content-length"]) > 0
            assert http.post("/metrics").status_code == 405
    finally:
        metrics.close()


def _feeds(head: int) -> OpsSnapshot:
    return OpsSnapshot(feeds=[PlatformFeed("p1", head, 0, 0, 0, None)], rekey=None)


def test_concurrent_scrapes_share_one_reading_of_the_store() -> None:
    """Every scrape read the store: 60 at once starved the process's other work."""
    reads: list[float] = []

    def read() -> OpsSnapshot:
        reads.append(time.monotonic())
        time.sleep(0.3)  # a slow store: every scrape arrives while the first one reads
        return _feeds(len(reads))

    counts = ProcessCounters(
        quota_refusals={}, ack_outcomes={}, notifications_heard=0, poll_wakes=0, listening=True
    )
    metrics = Metrics(read, lambda: counts)
    url = f"http://127.0.0.1:{metrics.serve('127.0.0.1:0')}/metrics"
    try:
        with httpx.Client(timeout=30) as http, ThreadPoolExecutor(20) as pool:
            texts = list(pool.map(lambda _: http.get(url).text, range(20)))
            assert len(reads) == 1
            assert {_value(t, "numbind_feed_head", platform="p1") for t in texts} == {1}
            time.sleep(SNAPSHOT_MAX_AGE_SECONDS + 0.1)
            assert _value(http.get(url).text, "numbind_feed_head", platform="p1") == 2
            assert len(reads) == 2
    finally:
        metrics.close()


def test_a_store_down_is_read_once_a_second_too() -> None:
    now = [0.0]
    reads = 0

    def read() -> OpsSnapshot:
        nonlocal reads
        reads += 1
        if reads == 1:
            raise OSError("connection refused")
        return _feeds(reads)

    shared = SharedSnapshot(read, max_age=1.0, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(StoreUnreadable, match="connection refused"):
            shared()
    now[0] = 1.0
    assert shared() == _feeds(2) and shared() == _feeds(2)
    assert reads == 2
