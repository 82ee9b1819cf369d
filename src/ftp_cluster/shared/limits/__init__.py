"""Connection limits and bandwidth throttles behind one interface.

:class:`~ftp_cluster.shared.limits.base.LimitsBackend` is the contract;
:mod:`.local` implements it in-process (one worker, the library default) and
:mod:`.redis` cluster-wide, in Redis.
"""

from ftp_cluster.shared.limits.base import (
    Bucket,
    ConnectionCaps,
    LimitsBackend,
    Refusal,
)

__all__ = ["Bucket", "ConnectionCaps", "LimitsBackend", "Refusal"]
