"""File status with the birth time: Linux ``statx(2)`` through the C library.

``os.stat`` has no birth time on Linux before Python 3.15 (``st_ctime`` is
the inode *change* time, which MLST must not report as ``create``). glibc
2.28 and later export ``statx``; where it is missing, or the kernel or a
sandbox refuses it, :func:`stat_entry` falls back to ``os.lstat`` and the
birth time is unknown. One ``statx`` call replaces the ``lstat`` it would
otherwise cost, so a listing makes no more system calls than before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Status", "stat_entry"]

_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BASIC_STATS = 0x7FF
_STATX_BTIME = 0x800
_BUFFER_SIZE = 256  # sizeof(struct statx)
# struct statx (linux/stat.h): mask, nlink, mode, ino, size at fixed offsets,
# then four struct statx_timestamp {s64 sec; u32 nsec; s32 pad} and the device.
_HEAD = struct.Struct("=I4xQI8xH2xQQ")  # mask, attributes, nlink, mode, ino, size
_TIME = struct.Struct("=qI4x")
_BTIME_AT, _MTIME_AT, _DEV_AT = 80, 112, 136
_DEV = struct.Struct("=II")


class Status(NamedTuple):
    """What a listing needs of one file's status."""

    mode: int
    nlink: int
    size: int
    mtime: float
    ino: int
    dev: int
    birth: float | None  # None: the file system does not record it


#: What an old kernel or a seccomp filter answers instead of running statx.
_REFUSED = frozenset({errno.ENOSYS, errno.EPERM})


def _load() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.statx
    except (OSError, AttributeError):
        return None
    # int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf)
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    ]
    function.restype = ctypes.c_int
    return function


_statx = _load()


def stat_entry(path: str | os.PathLike[str], *, follow_symlinks: bool = False) -> Status:
    """The status of ``path`` (a symlink itself unless ``follow_symlinks``)."""
    global _statx  # noqa: PLW0603 - switched off once for the process, if refused
    if _statx is not None:
        buffer = ctypes.create_string_buffer(_BUFFER_SIZE)
        flags = 0 if follow_symlinks else _AT_SYMLINK_NOFOLLOW
        encoded = os.fsencode(path)
        if _statx(_AT_FDCWD, encoded, flags, _STATX_BASIC_STATS | _STATX_BTIME, buffer) == 0:
            return _decode(buffer.raw)
        code = ctypes.get_errno()
        if code not in _REFUSED:
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        _statx = None  # not usable here (old kernel, seccomp): stat from now on
    status = os.stat(path, follow_symlinks=follow_symlinks)
    return Status(
        mode=status.st_mode,
        nlink=status.st_nlink,
        size=status.st_size,
        mtime=status.st_mtime,
        ino=status.st_ino,
        dev=status.st_dev,
        birth=None,
    )


def _decode(raw: bytes) -> Status:
    mask, _attributes, nlink, mode, ino, size = _HEAD.unpack_from(raw)
    seconds, nanoseconds = _TIME.unpack_from(raw, _MTIME_AT)
    birth = None
    if mask & _STATX_BTIME:
        born, born_ns = _TIME.unpack_from(raw, _BTIME_AT)
        # Inodes made before the file system kept birth times read as zero.
        birth = born + born_ns / 1e9 if born > 0 else None
    major, minor = _DEV.unpack_from(raw, _DEV_AT)
    return Status(
        mode=mode,
        nlink=nlink,
        size=size,
        mtime=seconds + nanoseconds / 1e9,
        ino=ino,
        dev=os.makedev(major, minor),
        birth=birth,
    )
