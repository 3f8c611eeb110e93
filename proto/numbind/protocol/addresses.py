"""Registry addresses as a bundle (or ``--registry``) names them: ``host:port``, or several
joined by commas.

One rule, checked where an address enters (a bundle written or loaded, an admin command's
``--registry``), so a bad one is refused by name there rather than met as a gRPC error (or
ten seconds of retries) at the first call:

- the port is 1..65535 in ASCII digits (``str.isdigit`` also takes ``²`` and ``２``);
- the host is a DNS name, an IPv4 address in dotted-quad form, or an IPv6 address in
  brackets; brackets hold nothing else, and a name whose last label is all digits must be
  a dotted quad (``127.1`` and ``127.0.0.01`` mean different things to different resolvers);
- several addresses are IP literals of one family (gRPC's ``ipv4:``/``ipv6:`` targets list
  them; a DNS name that resolves to several is given as one address), and none twice once
  written canonically (``127.0.0.1:023001`` is ``127.0.0.1:23001``: listed twice, that
  process would get twice the calls).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["RegistryAddress", "check_registry_address", "parse_registry", "registry_addresses"]

_DIGITS_RE = re.compile(r"[0-9]+")  # ASCII only: str.isdigit also takes "²" and "２"
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class RegistryAddress:
    """One checked address. ``canonical`` is how two spellings of it compare equal."""

    text: str
    host: str
    port: int
    family: int | None  # 4 or 6 for an IP literal, None for a DNS name

    @property
    def canonical(self) -> str:
        host = f"[{self.host}]" if self.family == 6 else self.host
        return f"{host}:{self.port}"


def registry_addresses(registry: str) -> list[str]:
    """The addresses in a bundle's ``registry``: one ``host:port``, or several separated by
    commas (several registry processes; clients balance calls over them)."""
    return [a.strip() for a in registry.split(",")]


def check_registry_address(registry: str) -> None:
    """A bundle's ``registry`` as the module docstring says; ValueError naming what is wrong."""
    parse_registry(registry)


def parse_registry(registry: str) -> list[RegistryAddress]:
    """Every address of ``registry``, checked; ValueError naming the first bad one."""
    texts = registry_addresses(registry)
    if len(texts) > 1 and "" in texts:
        raise ValueError(f"registry address {registry!r}: an empty entry between commas")
    parsed = [_parse_one(address) for address in texts]
    if len(parsed) > 1:
        for address in parsed:
            if address.family is None:
                raise ValueError(
                    f"registry address {address.text!r}: several addresses must be IP "
                    "addresses (for a host name, give one name that resolves to them all)"
                )
        if len({address.family for address in parsed}) != 1:
            raise ValueError(f"registry addresses {registry!r} mix IPv4 and IPv6; list one family")
    seen: dict[str, str] = {}
    for address in parsed:
        if address.canonical in seen:
            raise ValueError(
                f"registry address {registry!r} lists {address.canonical} twice "
                f"({seen[address.canonical]!r} and {address.text!r})"
            )
        seen[address.canonical] = address.text
    return parsed


def _parse_one(text: str) -> RegistryAddress:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"registry address {text!r} is not host:port")
    if not _DIGITS_RE.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"registry address {text!r} is not host:port: port: got {port_text!r}, "
            "want 1..65535 in ASCII digits"
        )
    port = int(port_text)
    if host.startswith("[") or host.endswith("]"):
        return _bracketed(text, host, port)
    if ":" in host:
        raise ValueError(f"registry address {text!r}: write IPv6 hosts as [addr]:port")
    labels = host.removesuffix(".").split(".")
    if _DIGITS_RE.fullmatch(labels[-1]):
        try:
            ipv4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(
                f"registry address {text!r}: host: got {host!r}, want an IPv4 address "
                "as four decimal numbers 0..255 without leading zeros, or a host name"
            ) from None
        return RegistryAddress(text, str(ipv4), port, 4)
    if len(host) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(
            f"registry address {text!r}: host: got {host!r}, want a host name "
            "(letters, digits, hyphens, dot-separated) or an IP address"
        )
    return RegistryAddress(text, host.lower(), port, None)


def _bracketed(text: str, host: str, port: int) -> RegistryAddress:
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
    try:
        ipv6 = ipaddress.IPv6Address(inner) if inner else None
    except ValueError:
        ipv6 = None
    if ipv6 is None:
        raise ValueError(
            f"registry address {text!r}: host: got {host!r}, want brackets only around "
            "an IPv6 address ([::1]:7443; an IPv4 address or a name goes without them)"
        )
    return RegistryAddress(text, str(ipv6), port, 6)
