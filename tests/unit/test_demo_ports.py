"""A demo asked for a port that is taken (a demo left running holds it) says which port it
took instead; it used to move without a word, and the user's open page stayed on the old
demo, whose sign-in no longer worked."""

from __future__ import annotations

import socket

import pytest
from numbind.demo.children import port_for


def test_a_taken_port_is_replaced_and_said(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        port = port_for(taken, "carrier app")
    assert port != taken
    said = capsys.readouterr().err
    assert f"port {taken} is in use" in said and f"carrier app listens on {port}" in said


def test_a_free_port_is_kept_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert port_for(free, "hub") == free
    assert capsys.readouterr().err == ""
