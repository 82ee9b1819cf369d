"""Disk quotas on the worker side: one user's tally, scans, and one upload's reservations.

The tally itself lives in the limits backend (``limits.quotas``, in Redis
for a cluster). A :class:`UserQuota` is what a logged-in session with a
quota holds: it reserves and adjusts through the backend and, when the
backend has no tally yet for the user, counts what lies under the user's
real root (:func:`scan`) and sets it, one scan per user and worker at a
time (:class:`QuotaScans`). Users without a quota are not tallied at all.

An :class:`UploadQuota` is one upload's account: the data channel asks it
how much of the next chunk may be written (:meth:`UploadQuota.allow`),
which reserves in steps of the backend's chunk size, so the tally always
covers every byte written and concurrent uploads together never pass the
quota. At the end, :func:`settle` (in :mod:`.transfer`) brings the tally in
line with what the upload left on disk.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import PurePosixPath

from ftp_cluster.shared.limits.base import QuotaLimits, QuotaRefusal, Quotas, Usage
from ftp_cluster.shared.settings import ServerSettings
from ftp_cluster.shared.users import User
from ftp_cluster.worker.pathio.base import AbstractPathIO
from ftp_cluster.worker.protocol.requests import QuotaStatus

__all__ = [
    "QuotaExceeded",
    "QuotaScans",
    "QuotaUnavailable",
    "UploadQuota",
    "UserQuota",
    "quota_status",
    "scan",
]

log = logging.getLogger("ftp_cluster.worker")

#: Seconds an upload waits for the first scan of its user's directory.
SCAN_WAIT = 30.0


class QuotaExceeded(Exception):
    """The upload would pass the user's quota (552)."""


class QuotaUnavailable(Exception):
    """The user's tally cannot be had now (452): the backend is down and none is known."""


async def scan(path_io: AbstractPathIO, root: PurePosixPath) -> Usage:
    """What lies under ``root``: the bytes and count of regular files, links not followed."""
    total = files = 0
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = await path_io.list(directory)
        except OSError:
            continue  # removed meanwhile, or unreadable: nothing to count there
        for entry in entries:
            if entry.is_dir:
                pending.append(directory / entry.name)
            elif stat.S_ISREG(entry.mode):
                total += entry.size
                files += 1
    return Usage(total, files)


class QuotaScans:
    """The scans one worker runs, at most one per user at a time (shared by its sessions)."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(
        self, quotas: Quotas, user: str, path_io: AbstractPathIO, root: PurePosixPath
    ) -> asyncio.Task[None]:
        """The running scan of ``user``'s directory, started now if none runs."""
        task = self._running.get(user)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._scan(quotas, user, path_io, root), name=f"quota-scan-{user}"
            )
            self._running[user] = task
            task.add_done_callback(lambda _: self._running.pop(user, None))
        return task

    @staticmethod
    async def _scan(
        quotas: Quotas, user: str, path_io: AbstractPathIO, root: PurePosixPath
    ) -> None:
        try:
            usage = await scan(path_io, root)
            # Another worker may have been quicker: its tally stands.
            await quotas.set_usage(user, usage, only_if_unknown=True)
        except Exception:
            log.exception("quota scan of %s's directory failed", user)
            return
        log.info("quota of %s: %d bytes in %d files found", user, usage.bytes, usage.files)

    async def close(self) -> None:
        """Cancel the running scans (the server stops)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class UserQuota:
    """One logged-in user's quota: ``limits`` on the tally ``key`` of ``quotas``."""

    __slots__ = ("_path_io", "_root", "_scans", "key", "limits", "quotas")

    def __init__(
        self,
        quotas: Quotas,
        *,
        key: str,
        limits: QuotaLimits,
        scans: QuotaScans,
        path_io: AbstractPathIO,
        root: PurePosixPath,
    ) -> None:
        self.quotas = quotas
        self.key = key
        self.limits = limits
        self._scans = scans
        self._path_io = path_io
        self._root = root

    @classmethod
    def of(
        cls,
        user: User,
        *,
        quotas: Quotas,
        settings: ServerSettings,
        scans: QuotaScans,
        path_io: AbstractPathIO,
        root: PurePosixPath,
    ) -> UserQuota | None:
        """``user``'s quota on this server; ``None``: unlimited, not tallied."""
        limits = user.quota_limits(settings.default_quota_bytes, settings.default_quota_files)
        if limits.unlimited:
            return None
        return cls(quotas, key=user.key, limits=limits, scans=scans, path_io=path_io, root=root)

    async def logged_in(self) -> None:
        """A first login with no tally yet starts the scan, in the background."""
        if await self.quotas.usage(self.key) is None:
            self._scans.start(self.quotas, self.key, self._path_io, self._root)

    async def usage(self) -> Usage | None:
        return await self.quotas.usage(self.key)

    async def reserve(self, nbytes: int, files: int = 0) -> int:
        """Bytes granted (0 at the quota's edge); raises when nothing can be granted at all."""
        granted = await self.quotas.reserve(self.key, self.limits, nbytes, files)
        if granted is QuotaRefusal.UNKNOWN:
            scanning = self._scans.start(self.quotas, self.key, self._path_io, self._root)
            try:
                await asyncio.wait_for(asyncio.shield(scanning), SCAN_WAIT)
            except TimeoutError:
                raise QuotaUnavailable from None
            granted = await self.quotas.reserve(self.key, self.limits, nbytes, files)
        if granted is QuotaRefusal.FILES:
            raise QuotaExceeded
        if isinstance(granted, QuotaRefusal):
            raise QuotaUnavailable
        return granted

    async def adjust(self, nbytes: int, files: int = 0) -> None:
        await self.quotas.adjust(self.key, nbytes, files)


async def quota_status(quota: UserQuota | None) -> QuotaStatus:
    """What STAT and SITE QUOTA tell the user (the core asks only when there is a quota)."""
    if quota is None:
        return QuotaStatus(None, None, None, None)
    usage = await quota.usage()
    return QuotaStatus(
        usage.bytes if usage is not None else None,
        usage.files if usage is not None else None,
        quota.limits.bytes,
        quota.limits.files,
    )


class UploadQuota:
    """One upload's reservations: every byte it writes is covered by the tally first.

    ``free`` bytes (REST into an existing file: they overwrite what is
    counted already) cost nothing.
    """

    __slots__ = ("_free", "_headroom", "quota", "taken")

    def __init__(self, quota: UserQuota, free: int = 0) -> None:
        self.quota = quota
        self._free = free
        self._headroom = 0  # reserved and not yet written
        #: Bytes added to the tally for this upload so far.
        self.taken = 0

    async def allow(self, wanted: int) -> int:
        """How many of the next ``wanted`` bytes may be written; 0: the quota is full."""
        if self._free >= wanted:
            return wanted
        missing = wanted - self._free - self._headroom
        if missing > 0:
            granted = await self.quota.reserve(max(missing, self.quota.quotas.chunk_size()))
            self._headroom += granted
            self.taken += granted
        return min(wanted, self._free + self._headroom)

    def wrote(self, amount: int) -> None:
        """``amount`` bytes (no more than :meth:`allow` said) were written."""
        free = min(self._free, amount)
        self._free -= free
        self._headroom -= amount - free
