"""TYPE A line-end translation: exact at every chunk boundary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ftp_cluster.worker.ascii import FromNetwork, ToNetwork

TEXT = st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b"\r").replace(b"\x01", b"\n"))


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _to_network_whole(data: bytes) -> bytes:
    out = bytearray()
    for index, byte in enumerate(data):
        if byte == 0x0A and (index == 0 or data[index - 1] != 0x0D):
            out += b"\r"
        out.append(byte)
    return bytes(out)


@given(TEXT, st.lists(st.integers(0, 200), max_size=8))
def test_download_translation_does_not_depend_on_chunks(data: bytes, cuts: list[int]) -> None:
    codec = ToNetwork()
    sent = b"".join(codec.convert(piece) for piece in _pieces(data, cuts))
    assert sent == _to_network_whole(data)
    assert b"\n" not in sent.replace(b"\r\n", b"")  # no bare LF goes out


@given(TEXT, st.lists(st.integers(0, 200), max_size=8))
def test_upload_translation_does_not_depend_on_chunks(data: bytes, cuts: list[int]) -> None:
    codec = FromNetwork()
    stored = b"".join(codec.convert(piece) for piece in _pieces(data, cuts)) + codec.flush()
    assert stored == data.replace(b"\r\n", b"\n")


def test_a_cr_at_the_end_of_a_chunk_waits_for_the_next() -> None:
    codec = FromNetwork()
    assert codec.convert(b"a\r") == b"a"
    assert codec.convert(b"\nb\r") == b"\nb"
    assert codec.convert(b"c") == b"\rc"
    assert codec.convert(b"d\r") == b"d" and codec.flush() == b"\r"
    out = ToNetwork()
    assert out.convert(b"x\r") + out.convert(b"\ny\n") == b"x\r\ny\r\n"
