"""`make demo`: the whole numbind story on one machine, in one command.

Starts, in ./.demo (wiped each time; ``NUMBIND_DEMO_DIR`` moves it):

- a fresh registry with its embedded SQLite store, on 127.0.0.1:7443 (mTLS);
- twelve fictional sample apps (示例网盘, 示例外卖, 示例小贷 …) as workers that consume their
  event feeds and ack: one rejects with a reason, one is slow, one is offline (its orders go
  overdue after ``--order-deadline`` seconds);
- the carrier app (一证通查 / 一键解绑) on http://127.0.0.1:8080, in demo mode.

It seeds the story: a number whose previous holder left accounts at half the apps was
cancelled, frozen and sold again 40 days ago. Two apps already on numbind had their stale
bindings revoked by the carrier's REISSUED report alone; six that joined later still hold the
previous holder's accounts, next to the new holder's own. Sign in as the new holder and
clear them with one button.

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
import random
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from numbind.carrier_app.app import load_secret
from numbind.carrier_app.store import Store, mask
from numbind.protocol.bundle import Bundle
from numbind.sdk import (
    AckOutcome,
    CarrierClient,
    EventFeed,
    EventKind,
    FeedEvent,
    Kind,
    Lifecycle,
    LifecycleReport,
    NumbindClientError,
    PlatformClient,
    Row,
    secure_channel,
)

PY = sys.executable
CARRIER_ID = "demo-mobile"
CARRIER_NAME = "示例移动"
STOP_SECONDS = 3.0


class DemoError(Exception):
    """Set-up failed; the message says where to look."""


@dataclass(frozen=True)
class SampleApp:
    id: str
    name: str
    category: str
    behaviour: str = "normal"  # normal | reject | slow | offline


APPS = (
    SampleApp("demo-drive", "示例网盘", "cloud-drive"),
    SampleApp("demo-food", "示例外卖", "food-delivery"),
    SampleApp("demo-loan", "示例小贷", "lender", "reject"),
    SampleApp("demo-bank", "示例银行", "bank", "slow"),
    SampleApp("demo-social", "示例社交", "social"),
    SampleApp("demo-travel", "示例旅行", "travel", "offline"),
    SampleApp("demo-shop", "示例商城", "e-commerce"),
    SampleApp("demo-pay", "示例支付", "payments"),
    SampleApp("demo-ride", "示例出行", "ride-hailing"),
    SampleApp("demo-video", "示例视频", "video"),
    SampleApp("demo-game", "示例游戏", "games"),
    SampleApp("demo-health", "示例医疗", "health"),
)
REJECT_REASON = "该账户尚有未结清的借款，需原机主携带证件到网点核验后解绑"
SLOW_SECONDS = 8.0


@dataclass(frozen=True)
class Subscriber:
    label: str
    id_number: str  # fictional
    phone: str


NEW_HOLDER = Subscriber("new holder of a reissued number", "110105198808081234", "13800138000")
SECOND_NUMBER = "13912345678"  # the same subscriber's long-held number
QUIET = Subscriber("a subscriber with nothing bound", "310104199202025678", "13700137000")


def _days(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


# (app, account id, bound days ago): accounts bound to the reissued number.
BEFORE_REPORT = (("demo-ride", "prev-r1", 5 * 365), ("demo-game", "prev-g1", 3 * 365))
JOINED_LATER = (
    ("demo-drive", "prev-d1", 4 * 365),
    ("demo-food", "prev-f1", 5 * 365),
    ("demo-food", "prev-f2", 2 * 365),
    ("demo-loan", "prev-l1", 540),
    ("demo-bank", "prev-b1", 3 * 365),
    ("demo-social", "prev-s1", 6 * 365),
    ("demo-social", "prev-s2", 700),
    ("demo-travel", "prev-t1", 2 * 365),
)
NEW_HOLDER_OWN = (("demo-shop", "new-s1", 30), ("demo-pay", "new-p1", 12))
SECOND_OWN = (
    ("demo-drive", "me-d1", 7 * 365),
    ("demo-pay", "me-p1", 5 * 365),
    ("demo-video", "me-v1", 700),
)
ISSUED_DAYS, DEACTIVATED_DAYS, REISSUED_DAYS = 6 * 365, 160, 40


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


@dataclass
class Demo:
    root: Path
    registry_port: int
    app_port: int
    order_deadline: float
    children: list[asyncio.subprocess.Process] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "registry"

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def bundle_dir(self, principal: str) -> Path:
        return self.root / "bundles" / principal

    # -- processes ---------------------------------------------------------------------
    async def _spawn(
        self, *args: str, log: Path | None = None, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        # Without a log file the child writes to our terminal (the app's demo codes).
        out = open(log, "ab") if log else None  # noqa: SIM115, ASYNC230 (a local file)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT if out else None,
                env={**os.environ, **(env or {})},
                # Its own process group: the terminal's Ctrl-C reaches only us, and we stop
                # the whole group (the registry's worker processes too).
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        self.children.append(proc)
        return proc

    async def _run(self, *args: str) -> None:
        log = self.root / "setup.log"
        proc = await self._spawn(PY, "-m", "numbind.cli", *args, log=log)
        if await proc.wait() != 0:
            raise DemoError(f"`numbind {' '.join(args[:2])}` failed; see {log}")
        self.children.remove(proc)

    async def stop_children(self) -> None:
        """SIGTERM every child's process group, wait briefly, then SIGKILL what is left."""
        for proc in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        waits = [asyncio.wait_for(p.wait(), STOP_SECONDS) for p in self.children]
        await asyncio.gather(*waits, return_exceptions=True)
        for proc in self.children:
            # Also after a clean exit: a group can outlive its leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 1.0)
        self.children.clear()

    # -- set-up ------------------------------------------------------------------------
    async def setup_registry(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "cursors").mkdir(parents=True)
        await self._run("admin", "init", "--data-dir", str(self.data), "--registry", self.listen)
        sem = asyncio.Semaphore(4)

        async def add(*args: str) -> None:
            async with sem:
                await self._run(*args, "--data-dir", str(self.data), "--registry", self.listen)

        await asyncio.gather(
            add(
                "admin",
                "add-carrier",
                CARRIER_ID,
                "--display-name",
                CARRIER_NAME,
                "--out",
                str(self.bundle_dir(CARRIER_ID)),
            ),
            *(
                add(
                    "admin",
                    "add-platform",
                    a.id,
                    "--display-name",
                    a.name,
                    "--category",
                    a.category,
                    "--out",
                    str(self.bundle_dir(a.id)),
                )
                for a in APPS
            ),
        )
        log = self.root / "registry.log"
        proc = await self._spawn(
            PY,
            "-m",
            "numbind.cli",
            "serve",
            "--data-dir",
            str(self.data),
            "--listen",
            self.listen,
            log=log,
            env={
                "NUMBIND_ORDER_DEADLINE_SECONDS": str(self.order_deadline),
                "NUMBIND_EVALUATE_WORKERS": "1",
                "NUMBIND_HEARTBEAT_SECONDS": "5",
            },
        )
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text(errors="replace"):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise DemoError(f"the registry did not start; see {log}")
            await asyncio.sleep(0.1)

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
        await publish(BEFORE_REPORT, reissued)
        async with CarrierClient(Bundle.load(self.bundle_dir(CARRIER_ID))) as carrier:
            summary = await carrier.report(
                [
                    LifecycleReport(reissued, Lifecycle.ISSUED, _days(ISSUED_DAYS)),
                    LifecycleReport(reissued, Lifecycle.DEACTIVATED, _days(DEACTIVATED_DAYS)),
                    LifecycleReport(reissued, Lifecycle.REISSUED, _days(REISSUED_DAYS)),
                    LifecycleReport(SECOND_NUMBER, Lifecycle.ISSUED, _days(8 * 365)),
                    LifecycleReport(QUIET.phone, Lifecycle.ISSUED, _days(200)),
                ]
            )
        before = "、".join(names[a] for a, _, _ in BEFORE_REPORT)
        said.append(
            f"carrier {CARRIER_NAME} reported {mask('+86' + reissued)}: issued → cancelled "
            f"{DEACTIVATED_DAYS} days ago → reissued {REISSUED_DAYS} days ago; that report "
            f"alone sent {summary.orders_created} revocation orders ({before})"
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
        proc = await self._spawn(
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
            "--demo",
            "--no-access-log",
        )
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(_answers, self.url + "/"):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise DemoError("the carrier app did not start; see the lines above")
            await asyncio.sleep(0.2)

    # -- sample platforms --------------------------------------------------------------
    def start_workers(self) -> None:
        for a in APPS:
            if a.behaviour != "offline":
                self.workers.append(asyncio.create_task(self._worker(a), name=a.id))

    async def _worker(self, app: SampleApp) -> None:
        bundle = Bundle.load(self.bundle_dir(app.id))
        cursor = self.root / "cursors" / f"{app.id}.json"
        try:
            async with secure_channel(bundle) as channel:
                feed = EventFeed(channel, cursor)
                async for event in feed.events():
                    try:
                        await self._handle(app, event)
                    except NumbindClientError as exc:
                        print(f"  [{app.name}] ack failed: {exc.message}", flush=True)
        except NumbindClientError as exc:
            print(f"  [{app.name}] worker stopped: {exc.message}", flush=True)

    async def _handle(self, app: SampleApp, event: FeedEvent) -> None:
        if event.kind == EventKind.NUMBER_DEACTIVATED:
            await event.ack()
            print(f"  [{app.name}] noted: a number was cancelled; warned its account", flush=True)
            return
        rid = event.revocation_id[:8]
        if app.behaviour == "reject":
            await asyncio.sleep(1.0)
            await event.ack(AckOutcome.REJECTED, REJECT_REASON)
            print(f"  [{app.name}] rejected an unbinding ({rid}…): {REJECT_REASON}", flush=True)
            return
        await asyncio.sleep(SLOW_SECONDS if app.behaviour == "slow" else random.uniform(0.5, 2.5))
        await event.ack(AckOutcome.UNBOUND)
        print(f"  [{app.name}] unbound an account ({rid}…)", flush=True)

    async def stop_workers(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.workers.clear()

    async def until_a_child_exits(self) -> None:
        await asyncio.wait(
            [asyncio.create_task(p.wait()) for p in self.children],
            return_when=asyncio.FIRST_COMPLETED,
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


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


def _print_welcome(demo: Demo, story: list[str]) -> None:
    registry_log = demo.root / "registry.log"
    drive = demo.bundle_dir("demo-drive")
    lines = [
        "",
        "The story:",
        *(f"  - {line}" for line in story),
        "",
        f"Open {demo.url}  (the carrier app, in Chinese; English at the top right)",
        f"  sign in as the new holder:  phone {NEW_HOLDER.phone}, ID last six "
        f"{NEW_HOLDER.id_number[-6:]}",
        "  the one-time code appears on the page in a DEMO banner, and in this terminal",
        "  then press 一键解绑 and watch each app confirm (示例小贷 refuses, 示例银行 is slow,",
        f"  示例旅行 is offline and goes overdue after {demo.order_deadline:.0f} s)",
        f"  a subscriber with nothing bound:  phone {QUIET.phone}, ID last six "
        f"{QUIET.id_number[-6:]}",
        f"  reassigned check for callers:  {demo.url}/check  "
        f"(try {NEW_HOLDER.phone} since {_days(365):%Y-%m-%d})",
        "",
        "Where to look:",
        f"  registry          {demo.listen} (mTLS; embedded SQLite in {demo.data})",
        f"  registry log      {registry_log}",
        f"  bundles           {demo.root / 'bundles'}",
        f"  tokenise yourself .venv/bin/numbind tokenize --bundle {drive} 13800138000",
        f"  admin stats       .venv/bin/numbind admin stats --data-dir {demo.data}",
        "",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = Demo(
        root=args.dir.resolve(),
        registry_port=_free_port(args.registry_port),
        app_port=_free_port(args.app_port),
        order_deadline=args.order_deadline,
    )
    print(f"numbind demo: setting up in {demo.root}", flush=True)

    async def start() -> None:
        await demo.setup_registry()
        print(
            f"  registry on {demo.listen}; {len(APPS)} sample apps and carrier {CARRIER_NAME} "
            "registered",
            flush=True,
        )
        story = await demo.seed()
        secret_file = demo.seed_app_store()
        demo.start_workers()
        await demo.start_app(secret_file)
        _print_welcome(demo, story)

    code = 0
    starting = asyncio.create_task(start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # raises if set-up failed
            exited = asyncio.create_task(demo.until_a_child_exits())
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
        await demo.stop_children()
        print("numbind demo stopped.", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
