"""The carrier app's throttles over HTTP (issue 10, finding 6): sign-in slowed per client
address, and a stranger's failures on a number never keeping its holder out. The back-off
itself, with a clock, is in test_carrier_app_store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request

from tests.unit.carrier_app_http import (
    BASE_URL,
    FakeRegistry,
    Gateway,
    csrf,
    form_token,
    make_app,
    settings_for,
    zh,
)


@asynccontextmanager
async def from_addresses(app: FastAPI, *hosts: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """The app with its lifespan run, and one browser-less client per address."""
    async with app.router.lifespan_context(app):
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(host, 40000)), base_url=BASE_URL
            )
            for host in hosts
        ]
        try:
            yield clients
        finally:
            for c in clients:
                await c.aclose()


async def test_sign_in_is_throttled_per_client_address(tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path), FakeRegistry(), Gateway())  # 10 a minute
    async with from_addresses(app, "203.0.113.7", "198.51.100.2") as (guesser, other):
        token = await form_token(guesser)
        answers = []
        for n in range(11):  # a different number each time: only the address is in common
            form = {"phone": f"138001380{n:02d}", "id_tail": "000000", "csrf": token}
            answers.append(await guesser.post("/signin", data=form))
        assert [a.status_code for a in answers] == [400] * 10 + [429]
        before, after = zh("err.wait", seconds="§").split("§")
        assert re.search(re.escape(before) + r"[1-6]" + re.escape(after), answers[-1].text)
        # The code step spends from the same bucket.
        code = {"challenge": "x", "code": "123456", "csrf": token}
        assert (await guesser.post("/signin/code", data=code)).status_code == 429
        # Another address is not slowed.
        form = {"phone": "13800138009", "id_tail": "000000", "csrf": await form_token(other)}
        assert (await other.post("/signin", data=form)).status_code == 400


async def test_a_strangers_failures_do_not_keep_the_holder_out(tmp_path: Path) -> None:
    """Five wrong tries by anyone used to lock the number for 15 minutes, the holder's own
    code included. Now the holder's code works whatever others do to the number."""
    gateway = Gateway()
    app = make_app(settings_for(tmp_path), FakeRegistry(), gateway)
    strangers = [f"198.51.100.{i}" for i in range(1, 11)]
    async with from_addresses(app, "203.0.113.7", *strangers) as (holder, *others):
        token = await form_token(holder)
        form = {"phone": "13800138000", "id_tail": "31002X", "csrf": token}
        sent = await holder.post("/signin", data=form)
        assert sent.status_code == 200
        ((_, code),) = gateway.sent
        challenge = sent.text.split('name="challenge" value="', 1)[1].split('"', 1)[0]
        refused = []
        for stranger in others:  # ten addresses, three wrong tails each
            bad = {"phone": "13800138000", "id_tail": "000000"}
            bad["csrf"] = await form_token(stranger)
            for _ in range(3):
                refused.append((await stranger.post("/signin", data=bad)).status_code)
        assert set(refused) == {400, 429} and refused.count(400) >= 3
        done = await holder.post(
            "/signin/code", data={"challenge": challenge, "code": code, "csrf": csrf(sent.text)}
        )
        assert done.status_code == 303 and done.headers["location"] == "/me"
        assert (await holder.get("/me")).status_code == 200


def _request(host: str) -> Request:
    return Request({"type": "http", "client": (host, 1), "headers": [], "method": "GET"})


def test_ipv6_clients_are_keyed_by_their_64_and_buckets_refill() -> None:
    from numbind.carrier_app.throttle import TokenBucket, client_key

    assert client_key(_request("2001:db8:1:2::1")) == client_key(_request("2001:db8:1:2:ffff::9"))
    assert client_key(_request("2001:db8:1:3::1")) != client_key(_request("2001:db8:1:2::1"))
    assert client_key(_request("::ffff:192.0.2.1")) == "192.0.2.1"
    now = [0.0]
    bucket = TokenBucket(6, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(6)] == [0.0] * 6
    assert bucket.take("a") == 10.0  # six a minute: one every ten seconds
    assert bucket.take("b") == 0.0
    now[0] += 10
    assert bucket.take("a") == 0.0 and bucket.take("a") > 0
