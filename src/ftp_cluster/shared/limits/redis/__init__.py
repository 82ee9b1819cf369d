"""The cluster-wide limits backend, in Redis: :class:`.backend.RedisLimits`."""

from ftp_cluster.shared.limits.redis.backend import RedisLimits

__all__ = ["RedisLimits"]
