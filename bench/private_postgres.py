"""A private PostgreSQL server for the scenarios that need one (the database logins, 16).

Never the machine's own instance (5432): ``initdb`` makes a cluster in a
temporary directory, and ``postgres`` runs as a child of the harness (not
daemonized by ``pg_ctl``, so its CPU counts as the harness's own, not as a
foreign program's) on a free port of 127.0.0.1 and a unix socket in that
directory, with trust authentication, no fsync, and is stopped afterwards.
PostgreSQL refuses to run as root: the harness run as root starts it as the
``postgres`` account (or ``nobody``), which owns the directory. The binaries
come from ``PATH`` or Debian's ``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.peers.base import PeerUnavailable, free_port

__all__ = ["PrivatePostgres", "find_binaries"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0
_DATABASE = "ftp"
_USER = "ftp"


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    return None


def _account() -> pwd.struct_passwd | None:
    """Whom to run the server as: None (ourselves) unless we are root."""
    if os.getuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PeerUnavailable("running as root, and no 'postgres' or 'nobody' account to run as")


class PrivatePostgres:
    """A PostgreSQL server started by the harness for the harness, with one database."""

    def __init__(self) -> None:
        self.port = 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._version = "unknown"

    @property
    def url(self) -> str:
        """TCP URL of the run's database (what ftp-cluster's ``[accounts] database`` gets)."""
        return f"postgresql://{_USER}@127.0.0.1:{self.port}/{_DATABASE}"

    def version(self) -> str:
        return self._version

    async def start(self) -> None:
        binaries = find_binaries()
        if binaries is None:
            raise PeerUnavailable(
                "PostgreSQL server binaries (initdb, postgres) not found on PATH or in "
                "/usr/lib/postgresql/*/bin (apt-get install postgresql)"
            )
        account = _account()
        # A short path: unix socket paths are limited to ~100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="ftpb-pg-"))
        if account is not None:
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        data = self.directory / "data"
        self.port = free_port()
        uid = account.pw_uid if account else None
        gid = account.pw_gid if account else None
        env = {**os.environ, "LC_ALL": "C"}
        done = await asyncio.to_thread(
            subprocess.run,
            [str(binaries / "initdb"), "-D", str(data), "-U", _USER, "-A", "trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.directory,
            env=env,
            check=False,
            user=uid,
            group=gid,
        )
        if done.returncode != 0:
            await self.stop()
            raise PeerUnavailable(f"initdb failed ({done.returncode}): {done.stderr[-300:]}")
        argv = [str(binaries / "postgres"), "-D", str(data), "-p", str(self.port)]
        for option in (
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.directory}",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=100",
            "shared_buffers=16MB",
        ):
            argv += ["-c", option]
        log = self.directory / "server.log"
        with log.open("wb") as out:
            if account is not None:
                os.chown(log, account.pw_uid, account.pw_gid)
            self._process = subprocess.Popen(  # noqa: ASYNC220 - returns at once, output to a file
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=env,
                start_new_session=True,
                user=uid,
                group=gid,
            )
        await self._wait_ready(log)

    async def _wait_ready(self, log: Path) -> None:
        """Until the server accepts connections; then create the run's database."""
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                connection = await asyncpg.connect(
                    f"postgresql://{_USER}@127.0.0.1:{self.port}/postgres", timeout=2
                )
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            try:
                await connection.execute(f"CREATE DATABASE {_DATABASE}")
                self._version = str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()
            return
        tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-300:]
        await self.stop()
        raise PeerUnavailable(f"private PostgreSQL did not start: {tail}")

    async def stop(self) -> None:
        """Fast shutdown (SIGINT), bounded; then SIGKILL; the directory is removed."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
                deadline = time.monotonic() + _STOP_TIMEOUT
                while process.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait(timeout=5)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
