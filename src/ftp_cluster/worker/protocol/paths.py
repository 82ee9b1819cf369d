"""Virtual paths: lexical normalisation and mapping onto a real root.

Virtual paths are what the client sees. ``..`` above ``/`` stays at ``/``
(``CWD ../../..`` at ``/`` is a no-op), which confines every virtual path to
the user's tree lexically; symlinks are the path IO's job
(:meth:`~ftp_cluster.worker.pathio.base.AbstractPathIO.confine`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["ROOT", "real_path", "resolve"]

ROOT = PurePosixPath("/")


def resolve(cwd: PurePosixPath, argument: str) -> PurePosixPath:
    """The absolute, normalised virtual path that ``argument`` names from ``cwd``."""
    parts: list[str] = [] if argument.startswith("/") else list(cwd.parts[1:])
    for part in argument.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return ROOT.joinpath(*parts)


def real_path(root: PurePosixPath, virtual: PurePosixPath) -> PurePosixPath:
    """The real path behind an already-normalised virtual path."""
    return root.joinpath(*virtual.parts[1:])
