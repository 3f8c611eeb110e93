"""The demo's federation of three, set up the way operators would: `numbind admin init` in
each data dir, `numbind federation init` on the hub, `request` / `add-member` / `accept`
for each member (files exchanged, never data dirs), principals registered where they
belong (the carrier at the hub, each sample app at its member), then one `numbind serve`
per registry."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from numbind.demo.cast import APPS, CARRIER_ID, CARRIER_NAME, FEDERATION_ID, HUB, DemoRegistry
from numbind.demo.children import PY, Children, DemoError

__all__ = ["Place", "serve_all", "set_up"]


@dataclass(frozen=True)
class Place:
    """Where one registry of the demo lives and listens."""

    registry: DemoRegistry
    data: Path
    port: int

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.registry.id}.log"


async def set_up(children: Children, root: Path, places: dict[str, Place], bundles: Path) -> None:
    """Data dirs, the federation, and every principal's bundle under `bundles`."""
    log = root / "setup.log"

    async def numbind(*args: str) -> None:
        await children.run_numbind(log, *args)

    await asyncio.gather(
        *(
            numbind("admin", "init", "--data-dir", str(p.data), "--registry", p.listen)
            for p in places.values()
        )
    )
    hub = places[HUB.id]
    await numbind(
        "federation", "init", "--data-dir", str(hub.data), "--id", FEDERATION_ID,
        "--name", HUB.name, "--address", hub.listen,
    )  # fmt: skip
    members = [p for p in places.values() if p.registry.id != HUB.id]

    def files(p: Place) -> tuple[Path, Path]:
        return root / f"{p.registry.id}.request", root / f"{p.registry.id}.grant"

    await asyncio.gather(
        *(
            numbind(
                "federation",
                "request",
                "--data-dir",
                str(p.data),
                "--id",
                p.registry.id,
                "--name",
                p.registry.name,
                "--address",
                p.listen,
                "--out",
                str(files(p)[0]),
            )
            for p in members
        )
    )
    # One at a time: each signs the next manifest version.
    for p in members:
        request, grant = files(p)
        await numbind(
            "federation", "add-member", "--data-dir", str(hub.data), str(request),
            "--out", str(grant),
        )  # fmt: skip
    await asyncio.gather(
        *(
            numbind("federation", "accept", "--data-dir", str(p.data), str(files(p)[1]))
            for p in members
        )
    )

    sem = asyncio.Semaphore(4)

    async def add(place: Place, *args: str) -> None:
        async with sem:
            await numbind(*args, "--data-dir", str(place.data), "--registry", place.listen)

    await asyncio.gather(
        add(
            hub,
            "admin",
            "add-carrier",
            CARRIER_ID,
            "--display-name",
            CARRIER_NAME,
            "--out",
            str(bundles / CARRIER_ID),
        ),
        *(
            add(
                places[a.registry],
                "admin",
                "add-platform",
                a.id,
                "--display-name",
                a.name,
                "--category",
                a.category,
                "--out",
                str(bundles / a.id),
            )
            for a in APPS
        ),
    )


async def serve_all(children: Children, places: dict[str, Place], env: dict[str, str]) -> None:
    """`numbind serve` for every registry, the hub first; back once all listen."""
    procs = []
    for p in places.values():
        proc = await children.spawn(
            PY, "-m", "numbind.cli", "serve", "--data-dir", str(p.data), "--listen", p.listen,
            log=p.log, env=env,
        )  # fmt: skip
        procs.append((p, proc))
    deadline = time.monotonic() + 60
    for p, proc in procs:
        while "listening on" not in (p.log.read_text(errors="replace") if p.log.exists() else ""):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise DemoError(f"registry {p.registry.name} did not start; see {p.log}")
            await asyncio.sleep(0.1)
