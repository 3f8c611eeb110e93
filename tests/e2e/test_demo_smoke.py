"""`make demo` smoke test: it comes up as a federation of three registries, tells the story
across them, and stops on Ctrl-C within 5 s with no process left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) for every live process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def descendants(root: int) -> dict[int, int]:
    """pid -> process group of every process below root."""
    table = processes()
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, pgid, _) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = pgid
                frontier.append(pid)
    return found


def alive(pids: set[int], groups: set[int]) -> list[int]:
    return [
        pid
        for pid, (_, pgid, state) in processes().items()
        if state != "Z" and (pid in pids or pgid in groups)
    ]


def _left_after(children: dict[int, int], groups: set[int]) -> list[int]:
    """What of the demo's processes is still alive once they have had 5 s to go."""
    left = alive(set(children), groups)
    for _ in range(50):
        if not left:
            break
        time.sleep(0.1)
        left = alive(set(children), groups)
    return left


def _start_demo(tmp_path: Path, registry_port: int, app_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NUMBIND_DEMO_DIR": str(tmp_path / "demo"),
        "NUMBIND_DEMO_REGISTRY_PORT": str(registry_port),
        "NUMBIND_DEMO_APP_PORT": str(app_port),
        "PYTHONUNBUFFERED": "1",
    }
    with open(tmp_path / "demo.out", "wb") as out:
        # Its own session stands in for the terminal: Ctrl-C goes to the foreground group.
        return subprocess.Popen(
            [sys.executable, "-m", "numbind.demo"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _until_ready(demo: subprocess.Popen[bytes], out_path: Path) -> None:
    # A guard against a hang, not a timing: three registries come up on a shared, loaded
    # machine.
    deadline = time.monotonic() + 300
    while "Press Ctrl-C to stop." not in out_path.read_text(errors="replace"):
        assert demo.poll() is None, out_path.read_text(errors="replace")
        assert time.monotonic() < deadline, out_path.read_text(errors="replace")
        time.sleep(0.2)


def _kill_all(demo: subprocess.Popen[bytes], children: dict[int, int]) -> None:
    """A failure before the children were listed must not leave them running."""
    children = children or descendants(demo.pid)
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
    for pgid in set(children.values()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def test_a_closed_terminal_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    # SIGHUP reaches the demo's group only (each child has a group of its own): the demo
    # used to die of it and leave the three registries and the app running, on its ports.
    demo = _start_demo(tmp_path, free_port(), free_port())
    children: dict[int, int] = {}
    try:
        _until_ready(demo, tmp_path / "demo.out")
        children = descendants(demo.pid)
        groups = set(children.values()) - {os.getpgid(demo.pid)}
        os.killpg(os.getpgid(demo.pid), signal.SIGHUP)
        assert demo.wait(timeout=30) == 0, (tmp_path / "demo.out").read_text()
        left = _left_after(children, groups)
        assert not left, f"left behind: {left}"
    finally:
        _kill_all(demo, children)


def test_demo_comes_up_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    registry_port, app_port = free_port(), free_port()
    out_path = tmp_path / "demo.out"
    demo = _start_demo(tmp_path, registry_port, app_port)
    url = f"http://127.0.0.1:{app_port}"
    children: dict[int, int] = {}
    try:
        _until_ready(demo, out_path)
        printed = out_path.read_text()
        assert f"Open {url}" in printed
        assert "phone 13800138000, ID last six 081234" in printed
        assert f"127.0.0.1:{registry_port}" in printed
        # Three registries, and which app sits where.
        where = dict(
            re.findall(r"^  (示例\w+) \((?:hub|net|bank), 127\.0\.0\.1:\d+\): (.+)$", printed, re.M)
        )
        assert set(where) == {"示例码号平台", "示例互联网平台登记", "示例金融平台登记"}, printed
        assert "lifecycle authority" in where["示例码号平台"]
        assert "示例小贷" in where["示例金融平台登记"] and "示例网盘" in where["示例互联网平台登记"]
        hub_show = subprocess.run(
            [sys.executable, "-m", "numbind.cli", "federation", "show", "--json",
             "--data-dir", str(tmp_path / "demo" / "hub")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert hub_show.returncode == 0, hub_show.stderr
        members = {m["id"]: m["name"] for m in json.loads(hub_show.stdout)["members"]}
        assert members == {
            "hub": "示例码号平台",
            "net": "示例互联网平台登记",
            "bank": "示例金融平台登记",
        }

        with httpx.Client(base_url=url, timeout=30) as web:
            home = web.get("/")
            assert home.status_code == 200 and "获取验证码" in home.text
            # The seeded story: the new holder sees the previous holder's six apps.
            # Every form carries the session's token (the app refuses a POST without it).
            token = re.search(r'name="csrf" value="([^"]+)"', home.text)
            assert token
            step = web.post(
                "/signin",
                data={"phone": "13800138000", "id_tail": "081234", "csrf": token.group(1)},
            )
            code = re.search(r'data-testid="demo-code">[^<]*?(\d{6})', step.text)
            assert code, step.text
            challenge = re.search(r'name="challenge" value="([^"]+)"', step.text)
            assert challenge
            me = web.post(
                "/signin/code",
                data={
                    "challenge": challenge.group(1),
                    "code": code.group(1),
                    "csrf": token.group(1),
                },
                follow_redirects=True,
            )
            assert me.url.path == "/me"
            assert "一键解绑（6 个应用）" in me.text
            for name in ("示例网盘", "示例外卖", "示例小贷", "示例银行", "示例社交", "示例旅行"):
                assert name in me.text
            # Apps from both members, each with its registry.
            assert "登记于 示例互联网平台登记" in me.text
            assert "登记于 示例金融平台登记" in me.text
            assert 'data-role="unreachable"' not in me.text
            assert "13800138000" not in me.text

            # The commands it prints to add your own platform work exactly as printed.
            lines = printed.split("Add your own platform to this demo", 1)[1].splitlines()
            commands = [shlex.split(line) for line in lines[1:3]]
            assert [c[1:3] for c in commands] == [
                ["admin", "add-platform"],
                ["platform", "publish"],
            ]
            for command in commands:
                ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
                assert ran.returncode == 0, ran.stderr
            assert "published 2 rows" in ran.stdout
            assert "我的应用" in web.get("/me").text  # the new holder sees it under 您的绑定

        children = descendants(demo.pid)
        assert children, "the demo runs the registry and the app as child processes"
        demo_group = os.getpgid(demo.pid)
        groups = set(children.values()) - {demo_group}
        # Every child runs in a process group of its own, so Ctrl-C reaches only the demo.
        assert demo_group not in children.values()

        started = time.monotonic()
        os.killpg(demo_group, signal.SIGINT)
        exit_code = demo.wait(timeout=5)
        took = time.monotonic() - started
        assert took < 5, f"took {took:.1f}s to stop"
        assert exit_code == 0, out_path.read_text()
        assert "numbind demo stopped." in out_path.read_text()
        left = _left_after(children, groups)
        assert not left, f"left behind: {left}"
    finally:
        _kill_all(demo, children)
