"""One worker's figures: the one model behind the heartbeat, ``status`` and ``/metrics``.

Every figure is a field of :class:`WorkerStats` whose metadata says how it is
shown: the Prometheus family and labels it feeds (:class:`Figure`) and,
optionally, its column in ``ftp-cluster status``. The heartbeat sends
:meth:`WorkerStats.figures` as they are, the supervisor keeps them per worker
(:mod:`ftp_cluster.supervisor.metrics` adds the dead workers' last totals),
and both the status table and the metrics exposition walk :data:`FIGURES`. A
new counter is one field here and one ``+= 1`` where it happens.

Transfer durations are a histogram per direction with fixed buckets
(:data:`TRANSFER_BUCKETS`); a worker sends its per-bucket counts, so the
supervisor can add several workers' histograms bucket by bucket.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FIGURES",
    "TRANSFER_BUCKETS",
    "Direction",
    "Figure",
    "Histogram",
    "WorkerStats",
    "login_result",
    "transfer_result",
]

Kind = Literal["counter", "gauge"]
Direction = Literal["download", "upload"]

#: Upper bounds (seconds) of the transfer-time buckets; +Inf is implied.
TRANSFER_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Figure:
    """How one :class:`WorkerStats` field is shown.

    ``metric``: the family name without the ``ftp_cluster_`` prefix (and
    without ``_total`` for counters); ``labels``: the fixed labels this field
    is the value for (``worker`` is added by the supervisor); ``column``: its
    heading in the ``status`` table (``None``: not shown there); ``size``:
    shown as bytes.
    """

    name: str  # the field, and the heartbeat key
    metric: str
    kind: Kind
    help: str
    labels: tuple[tuple[str, str], ...] = ()
    column: str | None = None
    size: bool = False


def _figure(
    metric: str,
    help: str,
    kind: Kind = "counter",
    column: str | None = None,
    size: bool = False,
    **labels: str,
) -> Any:
    spec = {"metric": metric, "kind": kind, "help": help, "column": column, "size": size}
    return field(default=0, metadata={"figure": spec, "labels": tuple(labels.items())})


_CONNECTIONS = "control connections accepted, and refused admission (a limit, or Redis down)"
_LOGINS = "login attempts by result"
_TRANSFERS = "data transfers that started (after the 150 reply), by direction and result"
_BYTES = "bytes moved over data connections (listings not included)"
_TLS = "TLS handshakes of control connections"


@dataclass(slots=True)
class Histogram:
    """Counts per bucket of :data:`TRANSFER_BUCKETS` (the last: above them all) and the sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(TRANSFER_BUCKETS) + 1))
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(TRANSFER_BUCKETS, seconds)] += 1
        self.sum += seconds


@dataclass(slots=True)
class WorkerStats:
    """What one server counted since it started; the fields are :data:`FIGURES`.

    The figure names are the heartbeat's keys and the ``status --json``
    worker keys, so they stay stable (``accepted``, ``bytes_uploaded``, ...).
    """

    sessions: int = _figure("sessions", "open control connections", "gauge", "sessions")
    accepted: int = _figure("connections", _CONNECTIONS, column="accepted", result="accepted")
    refused: int = _figure("connections", _CONNECTIONS, column="refused", result="refused")
    logins_ok: int = _figure("logins", _LOGINS, column="logins", result="ok")
    logins_bad_password: int = _figure("logins", _LOGINS, result="bad_password")
    logins_unknown_user: int = _figure("logins", _LOGINS, result="unknown_user")
    logins_limit: int = _figure("logins", _LOGINS, result="limit")
    logins_banned: int = _figure("logins", _LOGINS, result="banned")
    logins_tls_required: int = _figure("logins", _LOGINS, result="tls_required")
    downloads_ok: int = _figure("transfers", _TRANSFERS, direction="download", result="ok")
    downloads_failed: int = _figure("transfers", _TRANSFERS, direction="download", result="failed")
    downloads_aborted: int = _figure(
        "transfers", _TRANSFERS, direction="download", result="aborted"
    )
    uploads_ok: int = _figure("transfers", _TRANSFERS, direction="upload", result="ok")
    uploads_failed: int = _figure("transfers", _TRANSFERS, direction="upload", result="failed")
    uploads_aborted: int = _figure("transfers", _TRANSFERS, direction="upload", result="aborted")
    bytes_uploaded: int = _figure(
        "transfer_bytes", _BYTES, column="uploaded", size=True, direction="upload"
    )
    bytes_downloaded: int = _figure(
        "transfer_bytes", _BYTES, column="downloaded", size=True, direction="download"
    )
    tls_sessions: int = _figure("tls_handshakes", _TLS, column="tls", result="ok")
    tls_failures: int = _figure("tls_handshakes", _TLS, column="tls-fail", result="failed")
    redis_commands: int = _figure("redis_commands", "commands sent to Redis by this worker")
    download_seconds: Histogram = field(default_factory=Histogram)
    upload_seconds: Histogram = field(default_factory=Histogram)

    def transfer_finished(self, direction: Direction, result: str, seconds: float) -> None:
        """Count one started transfer (``result``: ok, failed, aborted) and its duration."""
        name = f"{direction}s_{result}"
        setattr(self, name, getattr(self, name) + 1)
        histogram = self.download_seconds if direction == "download" else self.upload_seconds
        histogram.observe(seconds)

    def login(self, result: str) -> None:
        """Count one login attempt (``result``: see :func:`login_result`)."""
        name = f"logins_{result}"
        setattr(self, name, getattr(self, name) + 1)

    def figures(self) -> dict[str, object]:
        """The heartbeat's payload: every figure, and the histograms as [counts, sum]."""
        found: dict[str, object] = {figure.name: getattr(self, figure.name) for figure in FIGURES}
        for direction in ("download", "upload"):
            histogram: Histogram = getattr(self, f"{direction}_seconds")
            found[f"{direction}_seconds"] = [list(histogram.counts), round(histogram.sum, 6)]
        return found


def _figures() -> tuple[Figure, ...]:
    found = []
    for item in dataclasses.fields(WorkerStats):
        spec = item.metadata.get("figure")
        if spec is not None:
            found.append(Figure(name=item.name, labels=item.metadata["labels"], **spec))
    return tuple(found)


#: Every figure of :class:`WorkerStats`, in declaration order.
FIGURES: tuple[Figure, ...] = _figures()


def login_result(failure: str | None) -> str:
    """The ``result`` label of a login outcome: ``None`` (success) or a Failure name."""
    if failure is None:
        return "ok"
    return {
        "BAD_PASSWORD": "bad_password",
        "UNKNOWN_USER": "unknown_user",
        "BANNED": "banned",
        "TLS_REQUIRED": "tls_required",
    }.get(failure, "limit")


def transfer_result(failure: str | None) -> str:
    """The ``result`` label of a transfer outcome: ``None`` (success) or a Failure name."""
    if failure is None:
        return "ok"
    return "aborted" if failure == "ABORTED" else "failed"
