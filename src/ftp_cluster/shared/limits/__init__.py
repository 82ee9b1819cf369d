"""Connection limits and bandwidth throttles, one part per kind of limit.

:class:`~ftp_cluster.shared.limits.base.LimitsBackend` is the contract: a
backend holds one part per kind of limit (:class:`Leases`,
:class:`Bandwidth`). :mod:`.local` implements it in-process (one worker, the
library default) and :mod:`.redis` cluster-wide, in Redis.
"""

from ftp_cluster.shared.limits.base import (
    Bandwidth,
    Bucket,
    ConnectionCaps,
    Leases,
    LimitsBackend,
    Refusal,
)

__all__ = ["Bandwidth", "Bucket", "ConnectionCaps", "Leases", "LimitsBackend", "Refusal"]
