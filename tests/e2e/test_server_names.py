"""A registry reached at an address other than 127.0.0.1, as behind a load balancer or at a
process's own IP: `admin init --server-name` makes the certificate name it, and a client
whose bundle names a host the certificate does not is told so, with the fix.

The server listens on 127.0.0.2 itself (Linux routes all of 127/8 to loopback; a server
bound to 127.0.0.1 is not reachable at 127.0.0.2), so the bundle's host differs from the
certificate's default names the way a real deployment's does, without leaving loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from numbind.registry.api.server import RegistryServer
from numbind.registry.app import Registry
from numbind.registry.config import Settings
from numbind.sdk import Bundle, CertificateMismatch, PlatformClient, RetryPolicy, Unavailable

from tests.e2e._cli import cli

HOST = "127.0.0.2"


def _loopback_alias() -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, 0))
        except OSError:
            return False
    return True


pytestmark = pytest.mark.skipif(not _loopback_alias(), reason=f"{HOST} is not a loopback here")


@asynccontextmanager
async def _serving(data: Path, port: int = 0) -> AsyncIterator[int]:
    server = RegistryServer(Registry.open(Settings(data_dir=data, listen=f"{HOST}:{port}")))
    port = await server.start()
    try:
        yield port
    finally:
        await server.stop()


async def _platform(capsys: pytest.CaptureFixture[str], data: Path, out: Path, port: int) -> None:
    rc, _, err = await cli(
        capsys,
        *("admin", "add-platform", "acme", "--data-dir", data, "--display-name", "Acme"),
        *("--category", "other", "--out", out, "--registry", f"{HOST}:{port}"),
    )
    assert rc == 0, err


async def test_a_registry_initialised_with_server_name_is_reached_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle = tmp_path / "data", tmp_path / "acme"
    rc, out, err = await cli(capsys, "admin", "init", "--data-dir", data, "--server-name", HOST)
    assert rc == 0, err
    assert f"server cert:    created, naming 127.0.0.1, localhost, ::1, {HOST}\n" in out
    async with _serving(data) as port:
        await _platform(capsys, data, bundle, port)
        rc, out, err = await cli(capsys, "tokenize", "--bundle", bundle, "+8613800138000")
    assert rc == 0, err
    assert "+8613800138000" in out


async def test_an_unnamed_host_is_named_in_the_error_and_init_adds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle = tmp_path / "data", tmp_path / "acme"
    rc, _, err = await cli(capsys, "admin", "init", "--data-dir", data)
    assert rc == 0, err
    fix = (
        f"`numbind admin init --data-dir DIR --server-name {HOST}` (DIR: the registry's own "
        "data dir)"
    )
    async with _serving(data) as port:
        await _platform(capsys, data, bundle, port)
        rc, out, err = await cli(capsys, "tokenize", "--bundle", bundle, "+8613800138000")
        assert rc == 1 and out == ""
        (message,) = err.splitlines()  # one line, no traceback
        assert message == (
            f"numbind: error: cannot reach the registry at {HOST}:{port} (the address in "
            f"{bundle / 'bundle.json'}): the registry's certificate does not name {HOST}; "
            f"re-issue it with {fix} and restart the registry"
        )
        rc, _, err = await cli(
            capsys, "admin", "keys", "--data-dir", data, "--registry", f"{HOST}:{port}"
        )
        assert rc == 1 and f"does not name {HOST}; re-issue it with {fix}" in err, err
        assert "is `numbind serve` running there?" not in err  # it is: the certificate is not

        rc, out, err = await cli(capsys, "admin", "init", "--data-dir", data, "--server-name", HOST)
        assert rc == 0, err
        assert f"server cert:    re-issued, naming 127.0.0.1, localhost, ::1, {HOST}\n" in out
        assert "restarted" in out
    # The running process kept the certificate it started with; a restart presents the new one.
    async with _serving(data, port):
        rc, out, err = await cli(capsys, "tokenize", "--bundle", bundle, "+8613800138000")
    assert rc == 0, err

    rc, out, err = await cli(capsys, "admin", "init", "--data-dir", data, "--server-name", HOST)
    assert rc == 0 and "server cert:    kept, naming" in out, err


async def test_the_sdk_does_not_retry_a_certificate_that_names_another_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle = tmp_path / "data", tmp_path / "acme"
    rc, _, err = await cli(capsys, "admin", "init", "--data-dir", data)
    assert rc == 0, err
    # A retry would wait out this backoff first: the call ending well inside it shows the
    # mismatch was given up on at once (it was retried as any UNAVAILABLE, 8-10 s).
    slow = RetryPolicy(attempts=8, base=60.0, cap=60.0)
    async with _serving(data) as port:
        await _platform(capsys, data, bundle, port)
        async with PlatformClient(Bundle.load(bundle), retry=slow) as client:
            with pytest.raises(CertificateMismatch) as caught:
                await asyncio.wait_for(client.key_id(), 30)
    assert not caught.value.retryable
    assert isinstance(caught.value, Unavailable)  # what callers that catch it already catch
    assert "Hostname Verification Check failed" in caught.value.message


async def test_a_bad_server_name_is_one_usage_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = await cli(
        capsys, "admin", "init", "--data-dir", tmp_path / "d", "--server-name", "bad_name"
    )
    assert rc == 2
    assert err.splitlines()[-1] == (
        "numbind admin init: error: argument --server-name: server name 'bad_name': got "
        "neither a DNS name nor an IP address, want e.g. registry.example or 10.0.0.1"
    )
    assert not (tmp_path / "d").exists()
