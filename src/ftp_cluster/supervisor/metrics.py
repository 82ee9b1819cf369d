"""The supervisor's ``GET /metrics``: the whole host in the Prometheus text format.

The figures come over the heartbeat channel the supervisor already has:
each worker sends its :class:`~ftp_cluster.worker.stats.WorkerStats` every
second (and once more as it exits), the supervisor keeps the last one per
worker. A scrape reads them through :class:`ClusterCollector`, a custom
``prometheus_client`` collector - no multiprocess mode, so no per-process
files piling up as workers restart.

Counters never go backwards across a restart: when the supervisor reaps a
worker it adds that worker's last totals to its slot's
(:meth:`RetiredTotals.worker_exited`), and a slot's counter is those totals
plus what its live workers (two during a reload) report. A worker killed
with SIGKILL loses at most its last second of counts, never more.

The endpoint is served from the supervisor's select loop (no thread: the
supervisor forks, and a thread holding a lock at fork time would deadlock
the child). A request is read with a short timeout, like the control
socket's, so a stalled client delays the loop by at most that.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ftp_cluster.supervisor.children import WorkerHandle
from ftp_cluster.supervisor.listener import serve_waiting
from ftp_cluster.worker.stats import FIGURES, TRANSFER_BUCKETS

if TYPE_CHECKING:
    from ftp_cluster.supervisor.arbiter import Arbiter

__all__ = [
    "ClusterCollector",
    "ClusterView",
    "MetricsServer",
    "RedisProbe",
    "RetiredTotals",
    "open_metrics",
]

log = logging.getLogger("ftp_cluster.supervisor")

_PREFIX = "ftp_cluster_"
_COUNTERS = tuple(f for f in FIGURES if f.kind == "counter")
_DIRECTIONS = ("download", "upload")
_REQUEST_TIMEOUT = 0.5
_MAX_REQUEST = 8192


def _histogram(figures: dict[str, Any], direction: str) -> tuple[list[int], float] | None:
    value = figures.get(f"{direction}_seconds")
    if not isinstance(value, list) or len(value) != 2:
        return None
    counts, total = value
    if not isinstance(counts, list) or len(counts) != len(TRANSFER_BUCKETS) + 1:
        return None
    return [int(c) for c in counts], float(total)


@dataclass
class RetiredTotals:
    """What exited workers counted, per slot, and how often workers were restarted."""

    counters: dict[int, dict[str, int]] = field(default_factory=dict)
    histograms: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    restarts: int = 0

    def worker_exited(self, handle: WorkerHandle) -> None:
        """Keep ``handle``'s last totals (call once, when it is reaped)."""
        slot = self.counters.setdefault(handle.slot, {})
        for figure in _COUNTERS:
            value = handle.stats.get(figure.name)
            if isinstance(value, int):
                slot[figure.name] = slot.get(figure.name, 0) + value
        for direction in _DIRECTIONS:
            found = _histogram(handle.stats, direction)
            if found is not None:
                self.histograms[direction] = _add(self.histograms.get(direction), found)


def _add(
    base: tuple[list[int], float] | None, more: tuple[list[int], float]
) -> tuple[list[int], float]:
    if base is None:
        return list(more[0]), more[1]
    return [a + b for a, b in zip(base[0], more[0], strict=True)], base[1] + more[1]


class RedisProbe:
    """The supervisor's own view of Redis: up or not, and the cluster-wide session count."""

    def __init__(self, timeout: float = 0.5) -> None:
        self._timeout = timeout
        self._url: str | None = None
        self._client: Any = None

    def read(self, url: str, namespace: str) -> tuple[bool, int | None]:
        """(up, sessions): one PING, TIME and lease count; a failure is "down"."""
        import redis  # noqa: PLC0415 - not needed without a Redis

        from ftp_cluster.shared.limits.redis.admin import cluster_sessions  # noqa: PLC0415
        from ftp_cluster.shared.limits.redis.connection import sync_client  # noqa: PLC0415

        try:
            if self._client is None or url != self._url:
                self.close()
                self._client, self._url = sync_client(url, timeout=self._timeout), url
            self._client.client.ping()
            return True, cluster_sessions(self._client.client, namespace)
        except (redis.RedisError, redis.RedisClusterException, OSError, ValueError):
            self.close()
            return False, None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None


@dataclass
class ClusterView:
    """What a scrape reads from the arbiter (callables: read at scrape time)."""

    handles: Callable[[], Iterable[WorkerHandle]]  # every live worker process
    serving: Callable[[], int]  # slots with an accepting worker
    redis: Callable[[], tuple[str, str] | None]  # (url, namespace), None: no Redis
    retired: RetiredTotals


class ClusterCollector(Collector):
    """Builds every family from the workers' last figures and the retired totals."""

    def __init__(self, view: ClusterView, probe: RedisProbe | None = None) -> None:
        self._view = view
        self._probe = probe if probe is not None else RedisProbe()

    def collect(self) -> Iterator[Metric]:
        handles = list(self._view.handles())
        retired = self._view.retired
        yield from self._per_worker(handles, retired)
        yield self._transfer_seconds(handles, retired)
        workers = GaugeMetricFamily(_PREFIX + "workers", "worker processes serving a slot")
        workers.add_metric([], self._view.serving())
        yield workers
        restarts = CounterMetricFamily(
            _PREFIX + "worker_restarts", "workers that exited unasked and were replaced"
        )
        restarts.add_metric([], retired.restarts)
        yield restarts
        yield from self._redis(handles)

    def _per_worker(self, handles: Sequence[WorkerHandle], retired: RetiredTotals) -> list[Metric]:
        slots = sorted({h.slot for h in handles} | set(retired.counters))
        families: dict[str, Metric] = {}
        for figure in FIGURES:
            labels = ["worker", *(name for name, _ in figure.labels)]
            family = families.get(figure.metric)
            if family is None:
                kind = CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily
                family = kind(_PREFIX + figure.metric, figure.help, labels=labels)
                families[figure.metric] = family
            for slot in slots:
                value = sum(_int(h.stats.get(figure.name)) for h in handles if h.slot == slot)
                if figure.kind == "counter":
                    value += retired.counters.get(slot, {}).get(figure.name, 0)
                assert isinstance(family, CounterMetricFamily | GaugeMetricFamily)
                family.add_metric([str(slot), *(value for _, value in figure.labels)], value)
        return list(families.values())

    def _transfer_seconds(
        self, handles: Sequence[WorkerHandle], retired: RetiredTotals
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            _PREFIX + "transfer_seconds",
            "duration of data transfers that started, from the 150 reply to their end",
            labels=["direction"],
        )
        for direction in _DIRECTIONS:
            total = retired.histograms.get(direction)
            for handle in handles:
                found = _histogram(handle.stats, direction)
                if found is not None:
                    total = _add(total, found)
            counts, seconds = (
                total if total is not None else ([0] * (len(TRANSFER_BUCKETS) + 1), 0.0)
            )
            cumulative, buckets = 0, []
            for bound, count in zip((*map(_bound, TRANSFER_BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric([direction], buckets, seconds)
        return family

    def _redis(self, handles: Sequence[WorkerHandle]) -> Iterator[Metric]:
        where = self._view.redis()
        up = GaugeMetricFamily(_PREFIX + "redis_up", "whether the supervisor reaches Redis (0/1)")
        sessions = GaugeMetricFamily(
            _PREFIX + "cluster_sessions", "open sessions cluster-wide (Redis's lease count)"
        )
        if where is None:  # one worker, in-process limits: the cluster is this host
            up.add_metric([], 0)
            sessions.add_metric([], sum(_int(h.stats.get("sessions")) for h in handles))
            yield up
            yield sessions
            return
        reachable, count = self._probe.read(*where)
        up.add_metric([], 1 if reachable else 0)
        yield up
        if count is not None:
            sessions.add_metric([], count)
            yield sessions

    def close(self) -> None:
        self._probe.close()


def _bound(value: float) -> str:
    return repr(float(value))


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class MetricsServer:
    """``GET /metrics`` over HTTP/1.x on a listening socket polled by the supervisor's loop."""

    def __init__(self, address: tuple[str, int], collector: ClusterCollector) -> None:
        host, port = address
        self.collector = collector
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(16)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]

    def fileno(self) -> int:
        return self._sock.fileno()

    def handle(self) -> None:
        """Answer the connections waiting (called when the socket is readable)."""
        serve_waiting(self._sock, self._serve)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(_REQUEST_TIMEOUT)
        try:
            data = b""
            deadline = time.monotonic() + _REQUEST_TIMEOUT
            while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < _MAX_REQUEST:
                if time.monotonic() > deadline:
                    return
                chunk = conn.recv(_MAX_REQUEST)
                if not chunk:
                    break
                data += chunk
            conn.sendall(self._answer(data))
        except OSError as exc:
            log.debug("metrics request failed: %s", exc)

    def _answer(self, request: bytes) -> bytes:
        words = request.split(b"\r\n", 1)[0].split()
        if len(words) != 3 or not words[2].startswith(b"HTTP/"):
            return _response(400, b"text/plain", b"bad request\n")
        method, target = words[0], words[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return _response(404, b"text/plain", b"not found: try /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"text/plain", b"method not allowed\n")
        try:
            body = generate_latest(self._registry)
        except Exception:  # a scrape must never kill the supervisor
            log.exception("building /metrics failed")
            return _response(500, b"text/plain", b"internal error\n")
        response = _response(200, CONTENT_TYPE_LATEST.encode(), body)
        return response if method == b"GET" else response[: len(response) - len(body)]

    def close(self) -> None:
        self._sock.close()
        self.collector.close()


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            500: b"Internal Server Error"}  # fmt: skip


def _response(status: int, content_type: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, _REASONS[status], content_type, len(body))
    )
    return head + body


def open_metrics(arbiter: Arbiter, address: tuple[str, int]) -> MetricsServer:
    """Serve ``/metrics`` for ``arbiter`` on ``address`` from its loop; raises OSError."""

    def redis() -> tuple[str, str] | None:
        url = arbiter.redis_url
        return None if url is None else (url, arbiter.config.redis.namespace)

    def serving() -> int:
        return sum(1 for s in arbiter.slots if s.active is not None and s.active.ready)

    view = ClusterView(arbiter.workers.values, serving, redis, arbiter.retired)
    server = MetricsServer(address, ClusterCollector(view))
    arbiter.on_readable[server.fileno()] = server.handle
    return server
