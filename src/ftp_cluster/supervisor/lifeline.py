"""Children that die with the supervisor.

``PR_SET_PDEATHSIG`` asks the kernel to signal a child when its parent exits
(including ``kill -9``). It is cleared by nothing we do, but it is only set
after the fork, so a parent that died in between is caught by comparing
``os.getppid()`` with the pid the child was forked from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

__all__ = ["orphaned", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: signal.Signals) -> None:
    """Have the kernel send ``signum`` to this process when its parent exits."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def orphaned(parent_pid: int) -> bool:
    """True once the process we were forked from is gone."""
    return os.getppid() != parent_pid
