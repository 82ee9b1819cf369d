"""Addresses in FTP: one spelling per host, and PORT/EPRT/PASV arguments."""

from __future__ import annotations

import functools
import ipaddress

__all__ = ["is_ipv6", "normalise_host", "parse_eprt", "parse_port", "pasv_numbers"]


@functools.lru_cache(maxsize=4096)
def normalise_host(host: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 becomes IPv4, zone ids go."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_ipv6(host: str) -> bool:
    return ":" in host


def parse_port(argument: str) -> tuple[str, int] | None:
    """``h1,h2,h3,h4,p1,p2`` (RFC 959) as ``(host, port)``; ``None`` if malformed."""
    fields = argument.split(",")
    if len(fields) != 6 or not all(field.strip().isdigit() for field in fields):
        return None
    numbers = [int(field) for field in fields]
    if not all(0 <= number <= 255 for number in numbers):
        return None
    return ".".join(map(str, numbers[:4])), numbers[4] << 8 | numbers[5]


def parse_eprt(argument: str) -> tuple[str, int] | None:
    """``|1|h|p|`` or ``|2|h|p|`` (RFC 2428) as ``(host, port)``; ``None`` if malformed."""
    if len(argument) < 2:
        return None
    parts = argument[1:].split(argument[0])
    if len(parts) < 3 or parts[0] not in ("1", "2") or not parts[2].isdigit():
        return None
    try:
        address = ipaddress.ip_address(parts[1])
    except ValueError:
        return None
    if address.version != (4 if parts[0] == "1" else 6):
        return None
    port = int(parts[2])
    if port > 65535:
        return None
    return parts[1], port


def pasv_numbers(host: str, port: int) -> str:
    """The ``h1,h2,h3,h4,p1,p2`` of a 227 reply."""
    return ",".join([*host.split("."), str(port >> 8), str(port & 0xFF)])
