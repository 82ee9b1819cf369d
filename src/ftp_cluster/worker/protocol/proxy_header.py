"""PROXY protocol v1 and v2 headers (HAProxy's specification), sans IO.

A load balancer in front of the server opens each TCP connection with one
header saying whose connection it forwards. :func:`parse` looks at the bytes
received so far and says one of three things: :class:`Incomplete` (more bytes
are needed, and how many of them certainly belong to the header), a
:class:`Parsed` header with the number of bytes it took, or it raises
:class:`ProxyHeaderError`. It never reads past the header, so the caller
hands the rest of the buffer to whatever follows (FTP commands, a TLS
handshake, upload data).

A wrong first byte is an error at once; a header is never longer than
:data:`MAX_HEADER` (v1's own limit is 107 bytes). v2 TLVs must tile the
header's remaining length exactly, and a ``PP2_TYPE_CRC32C`` TLV must match
the header's checksum. ``LOCAL`` (v2) and ``UNKNOWN`` (v1) headers, which
proxies send for their own health checks, and address families other than
TCP over IPv4/IPv6 carry no client: their :attr:`ProxyHeader.source` is
``None`` and the connection's own address stands.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "MAX_HEADER",
    "V1_PREFIX",
    "V2_SIGNATURE",
    "Incomplete",
    "Parsed",
    "ProxyHeader",
    "ProxyHeaderError",
    "crc32c",
    "parse",
]

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107  # the specification's longest v1 line, CRLF included
_V2_FIXED = 16  # signature, version/command, family/transport, length

#: The longest header accepted: room for HAProxy's usual TLVs (unique id,
#: ALPN, authority, SSL details), far below v2's 64 KiB maximum.
MAX_HEADER = 4096

_PP2_TYPE_CRC32C = 0x03
_FAMILIES = {0x11: (4, 12), 0x21: (6, 36)}  # TCP over IPv4 / IPv6: (version, address bytes)


class ProxyHeaderError(ValueError):
    """Not a valid PROXY header (the reason is safe to log)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header says: the client's address and port, or ``None`` for none."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Incomplete:
    """More bytes are needed.

    ``known``: how many more bytes certainly belong to the header (reading
    exactly that many never takes bytes that follow it); ``None`` for a v1
    line whose end is not yet in sight.
    """

    known: int | None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A whole header, which took the first ``consumed`` bytes."""

    header: ProxyHeader
    consumed: int


def parse(data: bytes) -> Incomplete | Parsed:
    """Parse the PROXY header at the start of ``data`` (see the module docstring)."""
    if not data:
        return Incomplete(1)
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    raise ProxyHeaderError("no PROXY protocol signature")


# ------------------------------------------------------------------------ v1


def _parse_v1(data: bytes) -> Incomplete | Parsed:
    head = data[: len(V1_PREFIX)]
    if not V1_PREFIX.startswith(head):
        raise ProxyHeaderError("bad PROXY v1 signature")
    end = data.find(b"\r\n", 0, _V1_MAX)
    if end < 0:
        if len(data) >= _V1_MAX or b"\n" in data[:_V1_MAX]:
            raise ProxyHeaderError("PROXY v1 line too long or not ended by CRLF")
        return Incomplete(None if len(head) == len(V1_PREFIX) else len(V1_PREFIX) - len(head))
    try:
        line = data[len(V1_PREFIX) : end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    return Parsed(_v1_fields(line.split(" ")), end + 2)


def _v1_fields(fields: list[str]) -> ProxyHeader:
    protocol = fields[0]
    if protocol == "UNKNOWN":
        return ProxyHeader(1, None)  # the rest of the line is to be ignored
    if protocol not in ("TCP4", "TCP6") or len(fields) != 5:
        raise ProxyHeaderError("PROXY v1 line is not TCP4/TCP6 with four fields")
    version = 4 if protocol == "TCP4" else 6
    source = _v1_address(fields[1], version), _v1_port(fields[3])
    destination = _v1_address(fields[2], version), _v1_port(fields[4])
    return ProxyHeader(1, source, destination)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError("PROXY v1 address is not an IP address") from None
    if address.version != version:
        raise ProxyHeaderError("PROXY v1 address does not match its protocol")
    return str(address)


def _v1_port(text: str) -> int:
    # Decimal digits only, no sign, no leading zero (as the specification says).
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError("PROXY v1 port is not a decimal number")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError("PROXY v1 port out of range")
    return port


# ------------------------------------------------------------------------ v2


def _parse_v2(data: bytes) -> Incomplete | Parsed:
    signature = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(signature):
        raise ProxyHeaderError("bad PROXY v2 signature")
    if len(data) < _V2_FIXED:
        if len(data) > len(V2_SIGNATURE):
            _v2_check_version(data[12])
        return Incomplete(_V2_FIXED - len(data))
    version_command, family, length = struct.unpack_from("!BBH", data, 12)
    _v2_check_version(version_command)
    total = _V2_FIXED + length
    if total > MAX_HEADER:
        raise ProxyHeaderError(f"PROXY v2 header of {total} bytes is too long")
    if len(data) < total:
        return Incomplete(total - len(data))
    header = data[:total]
    body = header[_V2_FIXED:]
    command = version_command & 0x0F
    shape = _FAMILIES.get(family)
    if shape is None:
        # UNSPEC, unix or UDP: no client this server could be reached by.
        return Parsed(ProxyHeader(2, None), total)
    ip_version, size = shape
    if length < size:
        raise ProxyHeaderError("PROXY v2 address block is too short")
    _check_tlvs(header, size)
    if command == 0:
        return Parsed(ProxyHeader(2, None), total)  # LOCAL: the proxy's own connection
    half = (size - 4) // 2
    source = _v2_address(body[:half], ip_version), int.from_bytes(body[size - 4 : size - 2])
    target = _v2_address(body[half : 2 * half], ip_version), int.from_bytes(body[size - 2 : size])
    return Parsed(ProxyHeader(2, source, target), total)


def _v2_check_version(version_command: int) -> None:
    if version_command >> 4 != 2:
        raise ProxyHeaderError("PROXY v2 header with an unknown version")
    if version_command & 0x0F not in (0, 1):
        raise ProxyHeaderError("PROXY v2 header with an unknown command")


def _v2_address(raw: bytes, version: int) -> str:
    if version == 4:
        return str(ipaddress.IPv4Address(raw))
    address = ipaddress.IPv6Address(raw)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def _check_tlvs(header: bytes, start: int) -> None:
    """TLVs after the addresses must tile the rest exactly; a CRC32C must match."""
    position = _V2_FIXED + start
    while position < len(header):
        if position + 3 > len(header):
            raise ProxyHeaderError("PROXY v2 TLV cut short")
        kind, size = struct.unpack_from("!BH", header, position)
        value_at = position + 3
        if value_at + size > len(header):
            raise ProxyHeaderError("PROXY v2 TLV longer than the header")
        if kind == _PP2_TYPE_CRC32C:
            if size != 4:
                raise ProxyHeaderError("PROXY v2 CRC32C TLV of the wrong size")
            expected = int.from_bytes(header[value_at : value_at + 4])
            zeroed = header[:value_at] + b"\0\0\0\0" + header[value_at + 4 :]
            if crc32c(zeroed) != expected:
                raise ProxyHeaderError("PROXY v2 CRC32C mismatch")
        position = value_at + size


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the v2 ``PP2_TYPE_CRC32C`` TLV carries it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
