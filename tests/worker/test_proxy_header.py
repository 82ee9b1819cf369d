"""The PROXY header parser: v1 and v2, every prefix, bad headers, and hypothesis.

``known`` in :class:`Incomplete` is what lets a data connection read its header
without taking the upload's first bytes: every test of a prefix checks that
reading that many more bytes never goes past the header's end.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftp_cluster.worker.protocol.proxy_header import (
    MAX_HEADER,
    V2_SIGNATURE,
    Incomplete,
    Parsed,
    ProxyHeader,
    ProxyHeaderError,
    crc32c,
    parse,
)

AFTER = b"USER alice\r\n"


def v2(
    source: str = "192.0.2.7",
    sport: int = 40000,
    target: str = "127.0.0.1",
    dport: int = 21,
    *,
    command: int = 1,
    tlvs: bytes = b"",
    family: int | None = None,
    crc: bool = False,
) -> bytes:
    """A v2 header as HAProxy builds one (``crc``: with a correct CRC32C TLV)."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(target)
    if family is None:
        family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", sport, dport) + tlvs
    if crc:
        body += b"\x03\x00\x04" + b"\0\0\0\0"
    header = V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body
    if crc:
        header = header[:-4] + crc32c(header).to_bytes(4)
    return header


def assert_prefixes_incomplete(header: bytes) -> None:
    """Every proper prefix asks for more, and never for more than the header has left."""
    for cut in range(len(header)):
        result = parse(header[:cut])
        assert isinstance(result, Incomplete), cut
        if result.known is not None:
            assert 1 <= result.known <= len(header) - cut, cut


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize(
    ("line", "source", "target"),
    [
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 21\r\n", ("192.0.2.7", 40000), ("127.0.0.1", 21)),
        (b"PROXY TCP6 2001:db8::7 ::1 65535 2121\r\n", ("2001:db8::7", 65535), ("::1", 2121)),
    ],
)
def test_v1_tcp(line: bytes, source: tuple[str, int], target: tuple[str, int]) -> None:
    assert parse(line + AFTER) == Parsed(ProxyHeader(1, source, target), len(line))
    assert_prefixes_incomplete(line)


def test_v1_unknown_has_no_client() -> None:
    line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"
    assert parse(line) == Parsed(ProxyHeader(1, None), len(line))


@pytest.mark.parametrize("address", ["192.0.2.7", "2001:db8::7"])
def test_v2_tcp(address: str) -> None:
    header = v2(address, target="::1" if ":" in address else "127.0.0.1")
    result = parse(header + AFTER)
    assert isinstance(result, Parsed)
    assert result.consumed == len(header)
    assert result.header.source == (address, 40000)
    assert_prefixes_incomplete(header)


def test_v2_ipv4_mapped_is_ipv4() -> None:
    result = parse(v2("::ffff:192.0.2.7", target="::1"))
    assert isinstance(result, Parsed) and result.header.source == ("192.0.2.7", 40000)


def test_v2_with_tlvs_and_crc() -> None:
    unique_id = b"\x05\x00\x05" + b"abcde"
    noop = b"\x04\x00\x00"
    header = v2(tlvs=unique_id + noop, crc=True)
    result = parse(header)
    assert isinstance(result, Parsed) and result.header.source == ("192.0.2.7", 40000)


def test_v2_local_and_unspec_have_no_client() -> None:
    assert parse(v2(command=0)) == Parsed(ProxyHeader(2, None), len(v2(command=0)))
    unspec = V2_SIGNATURE + b"\x21\x00\x00\x00"
    assert parse(unspec) == Parsed(ProxyHeader(2, None), 16)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"USER alice\r\n", "no PROXY protocol signature"),
        (b"PROXI TCP4", "bad PROXY v1 signature"),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000\r\n", "four fields"),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 021\r\n", "port"),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 70000\r\n", "out of range"),
        (b"PROXY TCP4 ::1 127.0.0.1 40000 21\r\n", "does not match"),
        (b"PROXY TCP4 example.com 127.0.0.1 1 2\r\n", "not an IP"),
        (b"PROXY UDP4 192.0.2.7 127.0.0.1 1 2\r\n", "TCP4/TCP6"),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\n", "CRLF"),
        (b"PROXY " + b"A" * 120, "too long"),
        (b"PROXY TCP4 \xff\r\n", "ASCII"),
        (b"\r\n\r\n\x00\r\nQUIX\n", "bad PROXY v2 signature"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c", "unknown version"),
        (V2_SIGNATURE + b"\x2f\x11", "unknown command"),
        (V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_HEADER), "too long"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x7f\0\0\1", "too short"),
        (v2(tlvs=b"\x05\x00"), "cut short"),
        (v2(tlvs=b"\x05\x00\x09abc"), "longer than the header"),
        (v2(tlvs=b"\x03\x00\x02ab"), "wrong size"),
        (v2(tlvs=b"\x03\x00\x04abcd"), "CRC32C mismatch"),
    ],
)
def test_bad_headers(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyHeaderError, match=reason):
        parse(data)


def test_wrong_signature_is_an_error_at_the_first_wrong_byte() -> None:
    with pytest.raises(ProxyHeaderError):
        parse(b"\r\n\r\n\x01")
    with pytest.raises(ProxyHeaderError):
        parse(b"PRX")


# ------------------------------------------------------------------ hypothesis

addresses4 = st.ip_addresses(v=4).map(str)
addresses6 = (  # IPv4-mapped ones come back as IPv4 (test_v2_ipv4_mapped_is_ipv4)
    st.ip_addresses(v=6).map(str).filter(lambda a: ipaddress.IPv6Address(a).ipv4_mapped is None)
)
ports = st.integers(0, 65535)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_refuse(data: bytes) -> None:
    try:
        result = parse(data)
    except ProxyHeaderError:
        return
    if isinstance(result, Parsed):
        assert 0 < result.consumed <= min(len(data), MAX_HEADER)
    else:
        assert result.known is None or result.known >= 1


@given(
    st.one_of(st.tuples(addresses4, addresses4), st.tuples(addresses6, addresses6)),
    st.tuples(ports, ports),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from([1, 2, 4, 5, 0x20, 0xE0]), st.binary(max_size=40))),
    st.binary(max_size=50),
)
def test_generated_headers_round_trip(
    pair: tuple[str, str],
    port_pair: tuple[int, int],
    version1: bool,
    tlvs: list[tuple[int, bytes]],
    after: bytes,
) -> None:
    source, target = pair
    sport, dport = port_pair
    if version1:
        protocol = "TCP4" if "." in source else "TCP6"
        header = f"PROXY {protocol} {source} {target} {sport} {dport}\r\n".encode()
    else:
        raw = b"".join(bytes([kind]) + struct.pack("!H", len(v)) + v for kind, v in tlvs)
        header = v2(source, sport, target, dport, tlvs=raw, crc=bool(tlvs))
    result = parse(header + after)
    assert isinstance(result, Parsed)
    assert result.consumed == len(header)
    assert result.header.source == (source, sport)
    assert result.header.destination == (target, dport)
    assert_prefixes_incomplete(header)


@given(st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_corrupted_v2_never_crashes(position: int, garbage: bytes) -> None:
    header = bytearray(v2(tlvs=b"\x05\x00\x03abc\x04\x00\x01z", crc=True))
    position %= len(header)
    header[position : position + len(garbage)] = garbage
    try:
        result = parse(bytes(header))
    except ProxyHeaderError:
        return
    if isinstance(result, Parsed):
        assert result.consumed <= len(header)
