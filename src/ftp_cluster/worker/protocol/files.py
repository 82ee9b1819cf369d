"""What the core knows of files: one entry's facts, and a listing of a path.

The path IO fills these in; the core decides what a client is shown of them
(LIST and MLSx lines, SIZE, MDTM, STAT). They are plain values, so the core
can be driven by tests and fuzzers with hand-made ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FileInfo", "Listing"]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One directory entry (``name`` is the last path component)."""

    name: str
    is_dir: bool
    size: int
    mtime: float  # seconds since the epoch, UTC
    mode: int  # st_mode: permission bits and type
    nlink: int
    unique: str  # stable id for MLST "unique" (device and inode on disks)
    #: Birth time where the file system records one; ``None`` leaves MLST's
    #: ``create`` fact out rather than passing the inode change time off as it.
    created: float | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """What LIST, NLST, MLSD or STAT found at a path.

    ``entries`` of a directory are sorted by name, without ``.`` and ``..``;
    a file lists itself. ``parent`` describes the directory above (MLSD's
    ``pdir``). ``now`` is when it was taken: LIST shows recent dates with
    the time of day, older ones with the year.
    """

    here: FileInfo
    entries: Sequence[FileInfo]
    parent: FileInfo
    now: float
