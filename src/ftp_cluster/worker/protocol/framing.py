"""Command lines out of the control connection's byte stream.

The control connection is a Telnet NVT stream (RFC 959 §4.1.3, RFC 854).
Lines end with LF (CR LF, or a bare LF from lax clients). Telnet commands are
taken out of each line: ``IAC IAC`` stands for a 0xFF byte, option
negotiation (``IAC WILL|WONT|DO|DONT x``) and subnegotiation are dropped
unanswered, and so are ``IAC IP`` and ``IAC DM``, the Interrupt Process and
Synch that RFC 959 clients send before an urgent ABOR. (The Synch's urgent
byte stays in the stream because control sockets are made ``SO_OOBINLINE``.)
UTF-8 never contains 0xFF, so no file name is mistaken for a Telnet command.

A line longer than the limit is answered once (the caller replies 500) and
skipped up to its end, without keeping it in memory.
"""

from __future__ import annotations

import enum

__all__ = ["OVERLONG", "LineReader", "Overlong"]

IAC = 0xFF
_SB, _SE = 250, 240
_WILL, _DONT = 251, 254


class Overlong(enum.Enum):
    """Marks a line that exceeded the limit (it is skipped, not returned)."""

    LINE = "command line too long"


OVERLONG = Overlong.LINE


class LineReader:
    """Buffers received bytes and hands out complete command lines."""

    __slots__ = ("_buffer", "_discarding", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | Overlong | None:
        """The next line without its line end, ``OVERLONG``, or ``None`` (need data)."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                # +1: the CR of a line of exactly ``limit`` bytes may be here already.
                if len(buffer) > self.limit + 1:
                    buffer.clear()
                    if not self._discarding:
                        self._discarding = True
                        return OVERLONG
                return None
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if self._discarding:  # the tail of a line already answered
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.limit:
                return OVERLONG
            return strip_telnet(line) if IAC in line else line


def strip_telnet(line: bytes) -> bytes:
    """``line`` with its Telnet commands taken out (``IAC IAC`` kept as 0xFF)."""
    out = bytearray()
    index, size = 0, len(line)
    while index < size:
        byte = line[index]
        if byte != IAC:
            out.append(byte)
            index += 1
            continue
        command = line[index + 1] if index + 1 < size else None
        if command == IAC:
            out.append(IAC)
            index += 2
        elif command is not None and _WILL <= command <= _DONT:
            index += 3  # the option byte goes too
        elif command == _SB:
            close = line.find(bytes((IAC, _SE)), index + 2)
            index = size if close < 0 else close + 2
        else:
            index += 2  # IP, DM, AO, AYT, NOP, ... or a lone IAC at the end
    return bytes(out)
