"""The server log's two formats, ``[logging] format = "text" | "json"``.

Every line goes through one handler on stderr, the supervisor's and (inherited
over fork) the workers'. A line is a log record; an *event* is a record made
with :func:`event_fields`, which names the event (``login``, ``transfer``, ...)
and carries its fields (``session``, ``client_ip``, ``user``, ...). In JSON a
line is one object::

    {"ts": "2026-12-07T14:04:29.123Z", "level": "INFO", "worker": 0,
     "event": "login", "message": "login ok", "session": "4711.3",
     "client_ip": "127.0.0.1", "user": "alice", "logger": "ftp_cluster.worker"}

``worker`` is the slot of the process (absent in the supervisor's lines);
plain records have ``"event": "log"``. In text the fields follow the
message as ``key=value``; the line's start is the classic one (the pid in
brackets tells the processes apart), which fail2ban filters match.

The format is known only once the configuration is read, but reading it
may already log (a certificate's expiry, an account given twice):
:func:`start_buffering` holds those records until :func:`configure` says
how to write them.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Mapping
from typing import Literal, TextIO

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure",
    "event_fields",
    "set_worker",
    "start_buffering",
]

LogFormat = Literal["text", "json"]

# Unchanged from the first releases: fail2ban filters (contrib/fail2ban) match it.
_TEXT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_BUFFERED = 10_000
#: The slot of this process once it is a worker (see :func:`set_worker`).
_worker: int | None = None


def set_worker(slot: int | None) -> None:
    """Mark this process's lines with its worker slot (called right after the fork)."""
    global _worker  # noqa: PLW0603 - one per process, set once after fork
    _worker = slot


def event_fields(event: str, **fields: object) -> dict[str, object]:
    """``extra=`` for a log call that records ``event`` with ``fields`` (``None``s left out)."""
    return {"event": event, "fields": {k: v for k, v in fields.items() if v is not None}}


def _fields(record: logging.LogRecord) -> Mapping[str, object]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the keys."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, object] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
        }
        if _worker is not None:
            line["worker"] = _worker
        line["event"] = getattr(record, "event", "log")
        line["message"] = record.getMessage()
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        line["logger"] = record.name
        line["pid"] = record.process
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, then the event's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{key}={_plain(value)}" for key, value in fields.items())
        return text


_NEEDS_QUOTES = re.compile(r'[\s"]')


def _plain(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or _NEEDS_QUOTES.search(text) else text


def _lean_records() -> None:
    # Neither format shows a record's source line, thread or process name:
    # not looking them up takes about a third off each record's cost (a
    # session logs three), the pid that both formats show is still taken.
    logging._srcfile = None  # the switch logging documents for this
    logging.logThreads = False
    logging.logMultiprocessing = False


def _formatter(format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if format == "json" else TextFormatter()


def start_buffering(level: str, stream: TextIO | None = None) -> None:
    """Hold every record from now on until :func:`configure` (start-up lines)."""
    target = logging.StreamHandler(stream if stream is not None else sys.stderr)
    buffer = logging.handlers.MemoryHandler(
        _BUFFERED, flushLevel=logging.CRITICAL + 1, target=target, flushOnClose=True
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(buffer)
    root.setLevel(level.upper())


def configure(format: LogFormat, level: str | None = None, stream: TextIO | None = None) -> None:
    """Write the server log to stderr (or ``stream``) in ``format``, held records first."""
    _lean_records()
    root = logging.getLogger()
    formatter = _formatter(format)
    held = [h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)]
    target: logging.Handler | None = None
    for buffer in held:
        target = buffer.target
        if target is not None:
            target.setFormatter(formatter)
        buffer.flush()
        root.removeHandler(buffer)
        buffer.target = None  # so that close() does not flush into it again
        buffer.close()
    if stream is not None or target is None:
        target = logging.StreamHandler(stream if stream is not None else sys.stderr)
        target.setFormatter(formatter)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(target)
    if level is not None:
        root.setLevel(level.upper())
