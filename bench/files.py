"""The test files every server serves, on tmpfs when there is one, and the fd limit.

Layout under the served root (the same for every server):
``/files/single.bin`` (single-stream size), ``/files/many.bin`` (per-client
size), ``/files/throttle.bin`` (sized for the throttle scenario) and
``/upload/`` (emptied after each server's run of a scenario).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Dataset", "raise_fd_limit"]

_TMPFS = Path("/dev/shm")
_BLOCK = 1 << 20


@dataclass
class Dataset:
    """The served root and the files in it; :meth:`remove` deletes everything."""

    base: Path
    on_tmpfs: bool

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def upload(self) -> Path:
        return self.root / "upload"

    @property
    def work(self) -> Path:
        """Configs, logs and pid files of the servers (not served)."""
        return self.base / "work"

    def real(self, virtual: str) -> Path:
        return self.root / virtual.lstrip("/")

    @classmethod
    def create(cls, sizes: dict[str, int], needed: int, parent: Path | None = None) -> Dataset:
        """Write one file per ``sizes`` entry (``/files/<name>.bin``) in a new directory.

        ``needed`` is the space the run will use at most (files plus uploads).
        The directory goes under ``parent`` if given, else on tmpfs when it has
        that much room, else in the temp directory.
        """
        if parent is None:
            roomy = _TMPFS.is_dir() and shutil.disk_usage(_TMPFS).free > needed * 1.1
            parent = _TMPFS if roomy else Path(tempfile.gettempdir())
        on_tmpfs = _is_tmpfs(parent)
        base = Path(tempfile.mkdtemp(prefix="ftp-bench-", dir=parent))
        dataset = cls(base, on_tmpfs)
        try:
            for directory in (dataset.root / "files", dataset.upload, dataset.work):
                directory.mkdir(parents=True)
            base.chmod(0o755)  # mkdtemp's 0700 would lock out vsftpd's session user
            for name, size in sizes.items():
                _write(dataset.root / "files" / f"{name}.bin", size)
        except BaseException:
            dataset.remove()
            raise
        return dataset

    def clear_uploads(self) -> None:
        for entry in self.upload.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()

    def warm(self, size: int) -> None:
        """Write and delete ``size`` bytes in the upload directory (tmpfs only).

        On a virtual machine that hands freed memory back to its host, the
        first write to a page the guest has not touched lately costs a host
        page fault: tmpfs writes then run 3-5x slower, and whichever server
        happens to upload first after a pause pays for everyone. Touching the
        pages right before a timed upload gives every server the same warm
        memory to write into.
        """
        if not self.on_tmpfs or size <= 0:
            return
        scratch = self.upload / f".warm-{os.getpid()}"
        try:
            _fill(scratch, size, bytes(min(size, _BLOCK)))
        finally:
            scratch.unlink(missing_ok=True)

    def upload_bytes(self) -> int:
        return sum(entry.stat().st_size for entry in self.upload.iterdir())

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def _is_tmpfs(path: Path) -> bool:
    """True if ``path`` lies on a tmpfs mount (the longest matching mount point decides)."""
    best, kind = "", ""
    where = str(path.resolve())
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount = fields[1]
                inside = where == mount or where.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        return False
    return kind == "tmpfs"


def _write(path: Path, size: int) -> None:
    # Random content: nothing along the way (page cache, loopback) can shortcut it.
    _fill(path, size, os.urandom(min(size, _BLOCK)))
    path.chmod(0o644)


def _fill(path: Path, size: int, block: bytes) -> None:
    """Write ``size`` bytes to a new ``path``, ``block`` after ``block``."""
    with path.open("wb", buffering=0) as out:
        remaining = size
        while remaining > 0:
            remaining -= out.write(block[:remaining])


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) to at least ``wanted``.

    Servers started afterwards inherit the limit, which they need as much as
    the client does for thousands of sessions.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft, hard
    if hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted, wanted
    new_soft = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return new_soft, hard
