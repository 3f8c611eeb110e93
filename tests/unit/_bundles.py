"""A platform bundle with no registry behind it and no credentials: for SDK tests that stand
in for the channel, or give the client one to a stand-in registry."""

from __future__ import annotations

from pathlib import Path

from numbind.protocol.bundle import Bundle


def bare_platform_bundle(directory: Path) -> Bundle:
    return Bundle(
        directory=directory,
        registry="127.0.0.1:1",
        role="platform",
        principal_id="acme",
        ca_pem=b"",
        cert_pem=b"",
        key_pem=b"",
    )
