"""Several inits of one data dir at once (N `serve --init` of a tier sharing its data dir,
or two operators) make one registry: one CA, a server certificate naming every name any of
them asked for, one admin bundle signed by that CA.

A reviewer started them together: each created a CA (the admin bundle was then signed by
the one that lost, and every handshake with it failed), each re-issued the certificate
from what it had read (names the others added were lost), and all but one died
registering the admin."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from numbind.protocol.bundle import Bundle

INITS = 4
# Each waits for the go file, then runs init: they start within milliseconds of each other.
_INIT = """
import sys, time
from pathlib import Path
from numbind.registry import operator
from numbind.registry.config import Settings
data, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
while not go.exists():
    time.sleep(0.001)
operator.init(Settings(data_dir=data), server_names=[name])
"""


def _signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_inits_started_together_make_one_registry(tmp_path: Path) -> None:
    data, go = tmp_path / "data", tmp_path / "go"
    names = [f"n{i}.example" for i in range(INITS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _INIT, str(data), str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in names
    ]
    time.sleep(1.0)  # let each get as far as waiting for the go
    go.touch()
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * INITS, errors

    pki = data / "pki"
    ca_pem = (pki / "ca.pem").read_bytes()
    server = x509.load_pem_x509_certificate((pki / "server.pem").read_bytes())
    named = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names) <= set(named.get_values_for_type(x509.DNSName))
    assert _signed_by((pki / "server.pem").read_bytes(), ca_pem)
    admin = Bundle.load(data / "admin-bundle")
    assert admin.ca_pem == ca_pem
    assert _signed_by(admin.cert_pem, ca_pem)
