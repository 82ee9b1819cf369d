"""Driving the protocol core over bytes, as the I/O layer does (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ftp_cluster.shared.users import Permission, User, UserTable
from ftp_cluster.worker.protocol.files import FileInfo, Listing
from ftp_cluster.worker.protocol.requests import (
    Authenticate,
    Done,
    Event,
    Outcome,
    Request,
    Signal,
)
from ftp_cluster.worker.protocol.session import Session, SessionOptions

GUIDO = User(
    "Guido",
    "secret",
    home_path="/Guido",
    permissions=(
        Permission("/", readable=False, writable=False),
        Permission("/Guido", readable=True, writable=True),
        Permission("/Guido/ro", readable=True, writable=False),
    ),
    maximum_connections=2,
)
ANON = User(home_path="/anon", permissions=(Permission("/anon", readable=True, writable=False),))
OPTIONS = SessionOptions(UserTable([GUIDO, ANON]), "hello there", "UNIX Type: L8")


def dir_info(name: str = "x") -> FileInfo:
    return FileInfo(name, True, 0, 0.0, 0o40755, 2, "1g1")


def file_info(name: str = "f", size: int = 10, created: float | None = None) -> FileInfo:
    return FileInfo(name, False, size, 86400.0, 0o100644, 1, "1g2", created)


def listing(*entries: FileInfo) -> Listing:
    return Listing(dir_info("here"), entries, dir_info("up"), 86400.0 * 2)


@dataclass
class Wire:
    """A session and everything it said; ``pending`` is the request it waits on."""

    session: Session
    replies: list[str] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    pending: Request | None = None

    def drain(self) -> list[Event]:
        """Take every event the session has now; record replies, requests, signals."""
        events: list[Event] = []
        while (event := self.session.next_event()) is not None:
            events.append(event)
            if isinstance(event, bytes):
                self.replies += _split(event)
            elif isinstance(event, Signal):
                self.signals.append(event)
            else:
                assert self.pending is None, f"two requests at once: {self.pending}, {event}"
                self.pending = event
        return events

    def feed(self, data: bytes) -> list[Event]:
        self.session.receive_data(data)
        return self.drain()

    def send(self, line: str) -> list[Event]:
        return self.feed(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def reply(self, line: str) -> str:
        """Send ``line``; the one reply it gets at once."""
        before = len(self.replies)
        self.send(line)
        got = self.replies[before:]
        assert len(got) == 1 and self.pending is None, (got, self.pending)
        return got[0]

    def request(self, line: str) -> Request:
        """Send ``line``; the request it asks for."""
        self.send(line)
        assert self.pending is not None, self.replies[-1:]
        return self.pending

    def complete(self, outcome: Outcome) -> list[str]:
        """Complete the pending request; the replies that follow."""
        request, self.pending = self.pending, None
        assert request is not None
        before = len(self.replies)
        self.session.complete(request, outcome)
        self.drain()
        return self.replies[before:]


def _split(data: bytes) -> list[str]:
    """Replies in ``data``, each as one string (multi-line ones joined by \\n)."""
    text = data.decode("utf-8", "surrogateescape")
    assert text.endswith("\r\n"), text
    replies: list[str] = []
    current: list[str] = []
    for line in text[:-2].split("\r\n"):
        current.append(line)
        if len(line) >= 4 and line[:3].isdigit() and line[3] == " ":
            replies.append("\n".join(current))
            current = []
    assert not current, text
    return replies


def connected(
    peer: str = "127.0.0.1", options: SessionOptions = OPTIONS, local: str = "127.0.0.1"
) -> Wire:
    """A session past admission, its greeting taken."""
    wire = Wire(Session(options, peer, local))
    wire.session.admitted()
    wire.drain()
    assert wire.replies == [f"220 {options.welcome_message}"]
    return wire


def logged_in(login: str = "Guido") -> Wire:
    wire = connected()
    request = wire.request(f"USER {login}") if login != "Guido" else None
    if request is None:
        assert wire.reply("USER Guido").startswith("331")
        request = wire.request("PASS secret")
    assert isinstance(request, Authenticate)
    user = GUIDO if login == "Guido" else ANON
    assert wire.complete(Done(user)) == ["230 login successful"]
    return wire
