"""`make demo`: the whole numbind story on one machine, in one command.

Starts, in ./.demo (wiped each time; ``NUMBIND_DEMO_DIR`` moves it):

- a federation of three registries, each with its embedded SQLite store (mTLS): the hub
  示例码号平台 (lifecycle authority and token service) on 127.0.0.1:7443, and two binding
  registries, 示例互联网平台登记 and 示例金融平台登记, on the next free ports; joined with
  `numbind federation init/request/add-member/accept`;
- twelve fictional sample apps (示例网盘, 示例外卖, 示例小贷 …), split between the two members,
  as workers that consume their event feeds and ack: one rejects with a reason, one is slow,
  one is offline (its orders go overdue after ``--order-deadline`` seconds);
- the carrier app (一证通查 / 一键解绑) on http://127.0.0.1:8080, in demo mode.

It seeds the story: a number whose previous holder left accounts at half the apps was sold
again 40 days ago by a carrier that joined numbind only afterwards: its first report is the
new holder's tenure (ISSUED 40 days ago), not the reissue, so nothing was revoked for them
and six apps still hold the previous holder's accounts, next to the new holder's own. Sign
in as the new holder and clear them with one button. (Had the carrier reported the
REISSUED, those bindings would have been revoked at once, and any published later revoked
on arrival.)

Ports: ``--registry-port`` / ``NUMBIND_DEMO_REGISTRY_PORT`` and ``--app-port`` /
``NUMBIND_DEMO_APP_PORT`` (a free port is used when the one asked for is taken).
Ctrl-C or SIGTERM stops everything within a few seconds: each child runs in its own process
group, and the whole group is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from numbind.carrier_app.app import load_secret
from numbind.carrier_app.store import Store, mask
from numbind.demo.cast import (
    APPS,
    CARRIER_ID,
    CARRIER_NAME,
    CARRIER_NAME_EN,
    HUB,
    JOINED_LATER,
    MEMBERS,
    NET,
    NEW_HOLDER,
    NEW_HOLDER_OWN,
    QUIET,
    REISSUED_DAYS,
    SECOND_NUMBER,
    SECOND_OWN,
    _days,
)
from numbind.demo.children import PY, Children, DemoError, answers, free_port, port_for
from numbind.demo.federation import Place, serve_all, set_up
from numbind.demo.welcome import print_welcome
from numbind.demo.workers import sample_app
from numbind.protocol.bundle import Bundle
from numbind.sdk import (
    CarrierClient,
    Kind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Reassigned,
    Row,
)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


@dataclass
class Demo:
    root: Path
    registry_port: int
    app_port: int
    order_deadline: float
    # Each registry's place, hub first; member ports are picked at start.
    places: dict[str, Place] = field(default_factory=dict)
    children: Children = field(default_factory=Children)
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.places:
            port = self.registry_port
            self.places[HUB.id] = Place(HUB, self.root / HUB.id, port)
            for i, member in enumerate(MEMBERS, start=1):
                taken = {p.port for p in self.places.values()}
                member_port = free_port(port + i)
                while member_port in taken:
                    member_port = free_port(0)
                self.places[member.id] = Place(member, self.root / member.id, member_port)

    @property
    def data(self) -> Path:
        """Where a visitor's own platform registers: the internet platforms' member."""
        return self.places[NET.id].data

    @property
    def listen(self) -> str:
        """The hub: where carriers and the carrier app talk."""
        return self.places[HUB.id].listen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def bundle_dir(self, principal: str) -> Path:
        return self.root / "bundles" / principal

    # -- set-up ------------------------------------------------------------------------
    async def setup_registry(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "cursors").mkdir(parents=True)
        await set_up(self.children, self.root, self.places, self.root / "bundles")
        await serve_all(
            self.children,
            self.places,
            {
                "NUMBIND_ORDER_DEADLINE_SECONDS": str(self.order_deadline),
                "NUMBIND_EVALUATE_WORKERS": "1",
                "NUMBIND_HEARTBEAT_SECONDS": "5",
            },
        )

    def where(self) -> list[str]:
        """Which app sits where, for the terminal."""
        out = [f"{HUB.name} ({HUB.id}, {self.listen}): lifecycle authority, token service"]
        for member in MEMBERS:
            apps = "、".join(a.name for a in APPS if a.registry == member.id)
            out.append(f"{member.name} ({member.id}, {self.places[member.id].listen}): {apps}")
        return out

    async def _members_applied(self, phone: str) -> None:
        """Wait until every member has applied the carrier's report (replicated from the
        hub): its platforms then get an answer about the number (not NO_DATA), and its
        holder answers know the new holder's tenure."""
        deadline = time.monotonic() + 60
        for member in MEMBERS:
            app = next(a for a in APPS if a.registry == member.id)
            async with PlatformClient(Bundle.load(self.bundle_dir(app.id))) as client:
                while True:
                    (answer,) = await client.check_reassigned([(phone, _days(1))])
                    if answer != Reassigned.NO_DATA:
                        break
                    if time.monotonic() > deadline:
                        raise DemoError(
                            f"{member.name} did not receive the carrier's report; see "
                            f"{self.places[member.id].log}"
                        )
                    await asyncio.sleep(0.2)

    async def seed(self) -> list[str]:
        """Bindings and lifecycle history; returns what happened, for the terminal."""
        said: list[str] = []
        names = {a.id: a.name for a in APPS}

        async def publish(rows: Sequence[tuple[str, str, float]], phone: str) -> None:
            by_app: dict[str, list[Row]] = {}
            for app_id, account, days in rows:
                by_app.setdefault(app_id, []).append(Row(phone, account, _days(days), Kind.LOGIN))
            for app_id, app_rows in by_app.items():
                async with PlatformClient(Bundle.load(self.bundle_dir(app_id))) as client:
                    await client.publish(app_rows)

        reissued = NEW_HOLDER.phone
        # The carrier joined numbind after reselling the number: it reports the new
        # holder's tenure, not the reissue. A reported REISSUED would revoke the previous
        # holder's bindings at once, and revoke on arrival any published after it.
        async with CarrierClient(Bundle.load(self.bundle_dir(CARRIER_ID))) as carrier:
            await carrier.report(
                [
                    LifecycleReport(reissued, Lifecycle.ISSUED, _days(REISSUED_DAYS)),
                    LifecycleReport(SECOND_NUMBER, Lifecycle.ISSUED, _days(8 * 365)),
                    LifecycleReport(QUIET.phone, Lifecycle.ISSUED, _days(200)),
                ]
            )
        await self._members_applied(reissued)
        said.append(
            f"carrier {CARRIER_NAME} joined numbind after reselling {mask('+86' + reissued)} "
            f"{REISSUED_DAYS} days ago: it reported the new holder's tenure, so nothing was "
            "revoked for the previous holder"
        )
        await publish(JOINED_LATER, reissued)
        later = sorted({names[a] for a, _, _ in JOINED_LATER}, key=list(names.values()).index)
        said.append(
            f"{len(later)} apps that joined later still hold the previous holder's accounts: "
            + "、".join(later)
        )
        await publish(NEW_HOLDER_OWN, reissued)
        await publish(SECOND_OWN, SECOND_NUMBER)
        said.append(
            "the new holder's own bindings: "
            + "、".join(names[a] for a, _, _ in NEW_HOLDER_OWN)
            + f"; a second number under the same ID: {mask('+86' + SECOND_NUMBER)}"
        )
        return said

    def seed_app_store(self) -> Path:
        secret_file = self.root / "carrier-app.secret"
        store = Store(self.root / "carrier-app.db", load_secret(secret_file))
        store.enroll(NEW_HOLDER.id_number, "+86" + NEW_HOLDER.phone, _days(REISSUED_DAYS))
        store.enroll(NEW_HOLDER.id_number, "+86" + SECOND_NUMBER, _days(8 * 365))
        store.enroll(QUIET.id_number, "+86" + QUIET.phone, _days(200))
        return secret_file

    async def start_app(self, secret_file: Path) -> None:
        proc = await self.children.spawn(
            PY,
            "-m",
            "numbind.carrier_app",
            "--carrier-bundle",
            str(self.bundle_dir(CARRIER_ID)),
            "--db",
            str(self.root / "carrier-app.db"),
            "--secret-file",
            str(secret_file),
            "--port",
            str(self.app_port),
            "--carrier-name",
            CARRIER_NAME,
            "--carrier-name-en",
            CARRIER_NAME_EN,
            "--demo",
            # The demo is plain HTTP on 127.0.0.1: cookies without Secure, loopback only.
            "--plain-http",
            "--no-access-log",
        )
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(answers, self.url + "/"):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise DemoError("the carrier app did not start; see the lines above")
            await asyncio.sleep(0.2)

    # -- sample platforms --------------------------------------------------------------
    def start_workers(self) -> None:
        for a in APPS:
            if a.behaviour != "offline":
                cursor = self.root / "cursors" / f"{a.id}.json"
                task = sample_app(a, Bundle.load(self.bundle_dir(a.id)), cursor)
                self.workers.append(asyncio.create_task(task, name=a.id))

    async def stop_workers(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.workers.clear()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m numbind.demo", description="numbind demo")
    p.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("NUMBIND_DEMO_DIR", Path.cwd() / ".demo")),
        help="working dir, wiped at start (NUMBIND_DEMO_DIR; default ./.demo)",
    )
    p.add_argument(
        "--registry-port",
        type=int,
        default=_env_int("NUMBIND_DEMO_REGISTRY_PORT", 7443),
        help="registry port (NUMBIND_DEMO_REGISTRY_PORT; default 7443)",
    )
    p.add_argument(
        "--app-port",
        type=int,
        default=_env_int("NUMBIND_DEMO_APP_PORT", 8080),
        help="carrier app port (NUMBIND_DEMO_APP_PORT; default 8080)",
    )
    p.add_argument(
        "--order-deadline",
        type=float,
        default=30.0,
        help="seconds before an unacked order shows overdue (default 30)",
    )
    return p


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # SIGHUP too: a closed terminal or a dropped ssh session. The children run in process
    # groups of their own (so Ctrl-C reaches only this one) and never see it: without this
    # they ran on after the demo, holding its ports.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    demo = Demo(
        root=args.dir.resolve(),
        registry_port=port_for(args.registry_port, "hub"),
        app_port=port_for(args.app_port, "carrier app"),
        order_deadline=args.order_deadline,
    )
    print(f"numbind demo: setting up in {demo.root}", flush=True)

    async def start() -> None:
        await demo.setup_registry()
        print(
            f"  a federation of three: {len(APPS)} sample apps at two member registries, "
            f"carrier {CARRIER_NAME} at the hub",
            flush=True,
        )
        for line in demo.where():
            print(f"    {line}", flush=True)
        story = await demo.seed()
        secret_file = demo.seed_app_store()
        demo.start_workers()
        await demo.start_app(secret_file)
        print_welcome(demo, story)

    code = 0
    starting = asyncio.create_task(start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # raises if set-up failed
            exited = asyncio.create_task(demo.children.until_one_exits())
            await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done() and not stop.is_set():
                print(f"a demo process exited unexpectedly; see {demo.root}", flush=True)
                code = 1
            exited.cancel()
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    except DemoError as exc:
        print(f"numbind demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    except Exception as exc:
        print(f"numbind demo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stopping.cancel()
        print("numbind demo: stopping…", flush=True)
        await demo.stop_workers()
        await demo.children.stop_all()
        print("numbind demo stopped.", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
