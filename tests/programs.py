"""The OS programs the tests drive: found on PATH, or a clear failure naming the package.

A missing client is a broken test machine, not a reason to pass quietly: `.ci/run`
installs every package named here.
"""

from __future__ import annotations

import shutil

import pytest

__all__ = ["program"]


def program(name: str, package: str | None = None) -> str:
    """The path of ``name``; fails the test if it is missing, naming its Debian package."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed (Debian package {package or name}; .ci/run installs it)"
        )
    return found
