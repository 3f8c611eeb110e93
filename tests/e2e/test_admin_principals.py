"""Registering and suspending principals: the Admin RPCs and the operator's offline commands
(`numbind admin add-platform|suspend|resume` on the data dir) go through one service, so
they accept and refuse the same things with the same messages."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from numbind.cli import main
from numbind.protocol.bundle import Bundle, make_client_key_and_csr
from numbind.protocol.categories import CATEGORIES
from numbind.registry import errors, operator
from numbind.registry.storage.db import Session
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import admin_pb2, admin_pb2_grpc

OK = {"name": "acme", "display_name": "示例网盘", "category": "cloud-drive"}
BAD = [
    pytest.param(
        {"display_name": "   "},
        "display_name: got '   ', want a name shown to holders",
        id="blank-display-name",
    ),
    pytest.param(
        {"display_name": "名" * 65},
        "display_name: got 65 characters, want at most 64",
        id="display-name-too-long",
    ),
    pytest.param(
        {"category": "<b>bank</b>"},
        f"category: got '<b>bank</b>', want one of {', '.join(CATEGORIES)}",
        id="category-not-in-vocabulary",
    ),
    pytest.param(
        {"display_name": "示例\x00网盘"},
        "display_name: got '示例\\x00网盘', want printable text (no control characters or "
        "line breaks)",
        id="display-name-not-printable",
    ),
    pytest.param(
        {"name": "Acme!"},
        "platform_id: got 'Acme!', want [a-z0-9][a-z0-9._-]{0,62}",
        id="bad-id",
    ),
]


async def _register_rpc(reg: RunningRegistry, request_id: str, **fields: str) -> None:
    _, csr = make_client_key_and_csr(fields["name"])
    async with secure_channel(reg.admin_bundle) as channel:
        await admin_pb2_grpc.AdminStub(channel).RegisterPlatform(
            admin_pb2.RegisterPlatformRequest(
                request_id=request_id,
                platform_id=fields["name"],
                display_name=fields["display_name"],
                category=fields["category"],
                csr_pem=csr.decode(),
            )
        )


def _register_cli(reg: RunningRegistry, out: Path, **fields: str) -> int:
    return main(
        [
            "admin",
            "add-platform",
            fields["name"],
            "--display-name",
            fields["display_name"],
            "--category",
            fields["category"],
            "--out",
            str(out),
            "--data-dir",
            str(reg.settings.data_dir),
            "--registry",
            reg.address,
        ]
    )


async def _principals(reg: RunningRegistry) -> dict[str, bool]:
    async with secure_channel(reg.admin_bundle) as channel:
        found = await admin_pb2_grpc.AdminStub(channel).ListPrincipals(
            admin_pb2.ListPrincipalsRequest()
        )
    return {p.principal_id: p.suspended for p in found.principals}


@pytest.mark.parametrize(("change", "message"), BAD)
async def test_rpc_and_cli_refuse_the_same_registration_with_the_same_message(
    registry: RunningRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    fields = {**OK, **change}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _register_rpc(registry, "r1", **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == message
    capsys.readouterr()
    assert _register_cli(registry, tmp_path / "bundle", **fields) == 1
    assert capsys.readouterr().err.strip() == f"numbind: error: {message}"
    assert not (tmp_path / "bundle").exists()
    assert await _principals(registry) == {"admin": False}


async def test_rpc_and_cli_accept_the_same_registration(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    longest = {**OK, "display_name": "名" * 64, "category": "food-delivery"}
    await _register_rpc(registry, "r1", **longest)
    assert _register_cli(registry, tmp_path / "bundle", **{**longest, "name": "acme2"}) == 0
    assert Bundle.load(tmp_path / "bundle").principal_id == "acme2"
    assert await _principals(registry) == {"admin": False, "acme": False, "acme2": False}
    # Registered once either way: the offline path refuses a second registration as the
    # RPC does (with a new request id).
    with pytest.raises(errors.AlreadyExists, match="platform_id: 'acme' is already registered"):
        operator.add_principal(
            registry.settings,
            "platform",
            "acme",
            tmp_path / "again",
            display_name="示例网盘",
            category="other",
        )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _register_rpc(registry, "r2", **{**longest, "name": "acme2"})
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.value.details() == "platform_id: 'acme2' is already registered"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:２３００１",
        "127.0.0.1:²",
        "[127.0.0.1]:23001,127.0.0.1:23002",
        "127.1:23001,127.0.0.1:23002",
        "127.0.0.1:23001,localhost:23002",
        "127.0.0.1:23001,127.0.0.1:023001",
        "foo bar:23001",
    ],
)
@pytest.mark.parametrize("role", ["platform", "carrier"])
async def test_a_bad_registry_address_is_refused_in_one_line_before_registering(
    registry: RunningRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    role: str,
    address: str,
) -> None:
    capsys.readouterr()
    category = ["--category", "other"] if role == "platform" else []
    out = tmp_path / "bundle"
    data = str(registry.settings.data_dir)
    argv = ["admin", f"add-{role}", "acme", "--display-name", "Acme", *category, "--out", str(out)]
    assert main([*argv, "--data-dir", data, "--registry", address]) == 1
    err = capsys.readouterr().err
    assert err.startswith("numbind: error: --registry: registry address ")
    assert err.count("\n") == 1 and any(part in err for part in address.split(","))
    assert not out.exists()
    # Nothing was registered: the same id is free for a good address.
    assert await _principals(registry) == {"admin": False}
    assert main([*argv, "--data-dir", data, "--registry", registry.address]) == 0


async def test_suspend_offline_and_over_rpc_apply_the_same_rules(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.add_platform("p1")
    data = str(registry.settings.data_dir)
    assert main(["admin", "suspend", "platform", "p1", "--data-dir", data]) == 0
    assert (await _principals(registry))["p1"] is True
    assert main(["admin", "resume", "platform", "p1", "--data-dir", data]) == 0
    assert (await _principals(registry))["p1"] is False
    capsys.readouterr()
    assert main(["admin", "suspend", "platform", "nobody", "--data-dir", data]) == 1
    assert "principal_id: no platform named 'nobody'" in capsys.readouterr().err
    # The admin is not suspendable, whichever way one asks.
    with pytest.raises(errors.InvalidArgument) as refused:
        operator.set_suspended(registry.settings, "admin", "admin", True)
    async with secure_channel(registry.admin_bundle) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin_pb2_grpc.AdminStub(channel).SetPrincipalSuspended(
                admin_pb2.SetPrincipalSuspendedRequest(
                    request_id="s1",
                    role=admin_pb2.PRINCIPAL_ROLE_ADMIN,
                    principal_id="admin",
                    suspended=True,
                )
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        err.value.details()
        == refused.value.message
        == ("role: got 'admin', want platform or carrier")
    )


async def test_peer_registries_are_listed_and_counted_with_their_own_role(
    registry_any_store: RunningRegistry,
) -> None:
    """At a federation hub the members are principals of role registry, and a member that
    forwards its platforms' tokenisation has usage: GetStats and ListPrincipals failed
    INTERNAL on them (no wire role for a registry)."""
    from numbind.registry.storage import principals, usage

    def member_with_usage(s: Session) -> None:
        principals.sync_registries(s, {"bank": "示例金融平台登记"})
        row = principals.find(s, "registry", "bank")
        assert row is not None
        usage.add(s, row.pk, 20_000, tokens=7)

    registry_any_store.registry.db.transact(member_with_usage)
    async with secure_channel(registry_any_store.admin_bundle) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        stats = await stub.GetStats(admin_pb2.GetStatsRequest())
        listed = await stub.ListPrincipals(admin_pb2.ListPrincipalsRequest())
    assert [(u.role, u.principal_id, u.tokens_evaluated) for u in stats.usage] == [
        (admin_pb2.PRINCIPAL_ROLE_REGISTRY, "bank", 7)
    ]
    assert (admin_pb2.PRINCIPAL_ROLE_REGISTRY, "bank") in [
        (p.role, p.principal_id) for p in listed.principals
    ]
    # Suspending one is not the admin's to do: the manifest decides who is a member.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async with secure_channel(registry_any_store.admin_bundle) as channel:
            await admin_pb2_grpc.AdminStub(channel).SetPrincipalSuspended(
                admin_pb2.SetPrincipalSuspendedRequest(
                    role=admin_pb2.PRINCIPAL_ROLE_REGISTRY, principal_id="bank", suspended=True
                )
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
