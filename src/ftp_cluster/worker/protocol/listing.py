"""Directory listings: LIST (``ls -l`` style), NLST, and MLSx facts (RFC 3659)."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterable

from ftp_cluster.worker.pathio.base import FileInfo

__all__ = ["FACTS", "join_lines", "list_line", "mlsx_facts", "mlsx_line", "modify_time"]

_SIX_MONTHS = 182 * 24 * 3600


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
        flags = ("el" if readable else "") + ("cmfp" if writable else "")
    else:
        flags = ("r" if readable else "") + ("adfw" if writable else "")
    return flags


#: The facts this server knows, in the order they are sent.
FACTS = ("type", "size", "modify", "create", "perm", "unique")


def mlsx_facts(
    info: FileInfo,
    *,
    readable: bool,
    writable: bool,
    kind: str | None = None,
    wanted: tuple[str, ...] = FACTS,
) -> str:
    """The fact string for one entry; ``kind`` overrides ``type`` (cdir, pdir)."""
    values = {
        "type": kind or ("dir" if info.is_dir else "file"),
        "size": str(info.size),
        "modify": modify_time(info.mtime),
        "create": modify_time(info.ctime),
        "perm": _perm(info, readable, writable),
        "unique": info.unique,
    }
    return "".join(f"{fact}={values[fact]};" for fact in wanted)


def mlsx_line(facts: str, name: str) -> str:
    return f"{facts} {name}"


def join_lines(lines: Iterable[str]) -> bytes:
    """Listing lines as sent on the data connection (CRLF terminated)."""
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8", "surrogateescape")
