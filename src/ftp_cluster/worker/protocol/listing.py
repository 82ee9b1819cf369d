"""Directory listings: LIST (``ls -l`` style), NLST, MLSx facts (RFC 3659), STAT.

Rendering is the core's: the I/O layer only reads the directory into a
:class:`~.files.Listing`, and sends the bytes rendered here.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import Literal

from ftp_cluster.worker.protocol.files import FileInfo, Listing

__all__ = ["FACTS", "join_lines", "list_line", "mlsx_facts", "modify_time", "render"]

_SIX_MONTHS = 182 * 24 * 3600

#: The facts this server knows, in the order they are sent.
FACTS = ("type", "size", "modify", "create", "perm", "unique")

#: ``(readable, writable)`` for a virtual path: the session's permissions.
Rights = Callable[[PurePosixPath], tuple[bool, bool]]


def modify_time(timestamp: float) -> str:
    """RFC 3659 time-val: ``YYYYMMDDHHMMSS`` in UTC."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(timestamp))


def list_line(info: FileInfo, now: float) -> str:
    """One ``ls -l`` line: what nearly every FTP client knows how to parse."""
    mode = stat.filemode(info.mode) if info.mode else ("d" if info.is_dir else "-") + "rw-r--r--"
    when = time.gmtime(info.mtime)
    if abs(now - info.mtime) < _SIX_MONTHS:
        stamp = time.strftime("%b %d %H:%M", when)
    else:
        stamp = time.strftime("%b %d  %Y", when)
    return f"{mode} {info.nlink:>3} ftp      ftp      {info.size:>13} {stamp} {info.name}"


def _perm(info: FileInfo, readable: bool, writable: bool) -> str:
    if info.is_dir:
        return ("el" if readable else "") + ("cmfp" if writable else "")
    return ("r" if readable else "") + ("adfw" if writable else "")


def mlsx_facts(
    info: FileInfo,
    *,
    readable: bool,
    writable: bool,
    kind: str | None = None,
    wanted: tuple[str, ...] = FACTS,
) -> str:
    """The fact string for one entry; ``kind`` overrides ``type`` (cdir, pdir).

    ``create`` is sent only where the birth time is known.
    """
    parts: list[str] = []
    for fact in wanted:
        if fact == "type":
            value = kind or ("dir" if info.is_dir else "file")
        elif fact == "size":
            value = str(info.size)
        elif fact == "modify":
            value = modify_time(info.mtime)
        elif fact == "create":
            if info.created is None:
                continue
            value = modify_time(info.created)
        elif fact == "perm":
            value = _perm(info, readable, writable)
        else:
            value = info.unique
        parts.append(f"{fact}={value};")
    return "".join(parts)


def render(
    kind: Literal["LIST", "NLST", "MLSD", "STAT"],
    path: PurePosixPath,
    listing: Listing,
    rights: Rights,
    wanted: tuple[str, ...] = FACTS,
) -> list[str]:
    """The lines of a listing of ``path`` (a directory, or one file)."""
    entries = listing.entries
    if kind == "NLST":
        return [entry.name for entry in entries]
    if kind in ("LIST", "STAT"):
        return [list_line(entry, listing.now) for entry in entries]

    def facts(where: PurePosixPath, info: FileInfo, as_kind: str | None = None) -> str:
        readable, writable = rights(where)
        return mlsx_facts(info, readable=readable, writable=writable, kind=as_kind, wanted=wanted)

    lines = [
        f"{facts(path, listing.here, 'cdir')} .",
        f"{facts(path.parent, listing.parent, 'pdir')} ..",
    ]
    lines += [f"{facts(path / entry.name, entry)} {entry.name}" for entry in entries]
    return lines


def join_lines(lines: Iterable[str]) -> bytes:
    """Listing lines as sent on the data connection (CRLF terminated).

    A CR or LF inside a name would forge a line: they are sent as spaces.
    """
    return "".join(f"{_one_line(line)}\r\n" for line in lines).encode("utf-8", "surrogateescape")


def _one_line(line: str) -> str:
    if "\r" in line or "\n" in line:
        return line.replace("\r", " ").replace("\n", " ")
    return line
