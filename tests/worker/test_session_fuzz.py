"""The protocol core under arbitrary byte streams and outcomes (hypothesis).

``make test`` runs a bounded number of examples; a long run is
``pytest tests/worker/test_session_fuzz.py --hypothesis-profile=fuzz``
(profiles in tests/conftest.py).

Invariants checked after every step:

* the core never raises;
* every byte string it hands out is a sequence of well-formed replies:
  CRLF-terminated lines, a three-digit code, multi-line replies opened with
  ``ddd-`` and closed with the same ``ddd``, no CR or LF inside a line
  (whatever the arguments held);
* no reply without a command: before admission nothing at all, and never
  more final replies than the greeting, the lines received, the over-long
  lines and the replies the I/O layer triggered (shutdown, timeout);
* at most one request runs, and nothing comes out after the hang-up;
* no configured or attempted password appears in any output or log record.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from ftp_cluster.shared.users import Permission, User, UserTable
from ftp_cluster.worker.protocol.files import Listing
from ftp_cluster.worker.protocol.requests import (
    Authenticate,
    Done,
    Failed,
    Failure,
    FileQuery,
    ListPath,
    OpenPassive,
    Outcome,
    Request,
    Signal,
    Transfer,
)
from ftp_cluster.worker.protocol.session import Phase, Session, SessionOptions
from tests.worker.wire import dir_info, file_info

PASSWORDS = ("Pw-alpha-7731", "Pw-\u00fcml\u00e4ut-4412")
ATTEMPTED = "Pw-guess-9090"
USERS = UserTable(
    [
        User("alice", PASSWORDS[0], permissions=(Permission("/", readable=True, writable=True),)),
        User("bob", PASSWORDS[1], home_path="/b", maximum_connections=1),
        User(home_path="/pub", permissions=(Permission("/pub", readable=True, writable=False),)),
    ]
)
LIMIT = 256
OPTIONS = SessionOptions(USERS, "fuzz", max_line_length=LIMIT, tls=True)
SECRETS = (*PASSWORDS, ATTEMPTED)

VERBS = [
    "USER", "PASS", "QUIT", "NOOP", "SYST", "FEAT", "OPTS", "HELP", "TYPE", "MODE", "STRU",
    "ALLO", "STAT", "PWD", "CWD", "CDUP", "SIZE", "MDTM", "MLST", "MFMT", "MKD", "RMD", "DELE",
    "RNFR", "RNTO", "PASV", "EPSV", "PORT", "EPRT", "REST", "ABOR", "RETR", "STOR", "STOU",
    "APPE", "LIST", "NLST", "MLSD", "XPWD", "AUTH", "PBSZ", "PROT", "SITE", "abor", "stat",
]  # fmt: skip
ARGUMENTS = st.one_of(
    st.sampled_from(
        [
            "",
            "alice",
            "bob",
            "anonymous",
            "A",
            "I",
            "ALL",
            "1",
            "2",
            "-la",
            "/",
            "..",
            "127,0,0,1,200,10",
            "127,0,0,2,200,10",
            "|1|127.0.0.1|5000|",
            "|2|::1|5000|",
            "20200101000000 f",
            "MLST type;size;create;",
            "UTF8 ON",
            "dir\r\n226 forged",
            'a"b',
            "\u00e9t\u00e9",
            "x" * 300,
            "TLS",
            "SSL",
            "0",
            "P",
            "C",
            "S",
        ]
    ),
    st.text(max_size=40),
)
TELNET = st.sampled_from([b"\xff\xf4", b"\xff\xf2", b"\xff\xff", b"\xff\xfb\x01", b"\xff"])


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    verb = draw(st.sampled_from(VERBS))
    argument = draw(st.sampled_from([*SECRETS, ""])) if verb == "PASS" else draw(ARGUMENTS)
    line = f"{verb} {argument}".rstrip().encode("utf-8", "surrogateescape")
    if draw(st.booleans()):
        line = draw(TELNET) + line
    if verb == "PASS":
        # Whole lines only: a password glued to the unfinished line before it
        # would be that line's argument, which the server may echo or log.
        return b"\r\n" + line + b"\r\n"
    return line + draw(st.sampled_from([b"\r\n", b"\n", b"\r\n", b""]))


CHUNKS = st.one_of(lines(), st.binary(max_size=64), lines().map(lambda line: line[:-1]))


@dataclass
class Step:
    kind: str  # "feed", "complete", "shutdown", "timeout", "admit"
    data: bytes = b""
    choice: int = 0


STEPS = st.lists(
    st.one_of(
        CHUNKS.map(lambda data: Step("feed", data)),
        st.integers(0, 7).map(lambda choice: Step("complete", choice=choice)),
        st.integers(0, 1).map(lambda choice: Step("shutdown", choice=choice)),
        st.just(Step("timeout")),
    ),
    max_size=60,
)

_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")


def check_replies(data: bytes) -> int:
    """Raise unless ``data`` is well-formed replies; their number."""
    text = data.decode("utf-8", "surrogateescape")
    assert text.endswith("\r\n"), text
    count = 0
    opened: str | None = None
    for line in text[:-2].split("\r\n"):
        assert "\r" not in line and "\n" not in line, line
        match = _REPLY_LINE.match(line)
        if opened is None:
            assert match is not None, line
            code, separator = match.group(1), match.group(2)
            if separator == "-":
                opened = code
            else:
                count += 1
        elif match is not None and match.group(1) == opened and match.group(2) == " ":
            opened = None
            count += 1
        else:
            # A middle line starts with a space, so it can never pass for the end.
            assert line.startswith(" "), line
    assert opened is None, text
    return count


def outcome_for(request: Request, choice: int) -> Outcome:
    failures = list(Failure)
    if choice >= 6:
        return Failed(failures[choice * 3 % len(failures)])
    match request:
        case Authenticate(login=login):
            user = USERS.find(login)
            return Done(user) if user is not None else Failed(Failure.UNKNOWN_USER)
        case FileQuery():
            return Done(dir_info() if choice % 2 else file_info("a\r\nb", choice, choice * 1.5))
        case ListPath():
            entries = (file_info("x\ny"), dir_info("d"))[: choice % 3]
            return Done(Listing(dir_info("here"), entries, dir_info("up"), 0.0))
        case OpenPassive():
            return Done(50000 + choice)
    return Done()


@dataclass
class Driver:
    session: Session = field(default_factory=lambda: Session(OPTIONS))
    pending: Request | None = None
    hung_up: bool = False
    replies: int = 0
    allowed: int = 1  # the greeting
    outputs: list[bytes] = field(default_factory=list)

    def drain(self) -> None:
        while (event := self.session.next_event()) is not None:
            assert not self.hung_up, f"{event!r} after the hang-up"
            if isinstance(event, bytes):
                self.replies += check_replies(event)
                self.outputs.append(event)
            elif event is Signal.HANGUP:
                self.hung_up = True
            elif isinstance(event, Request):
                assert self.pending is None, f"second request {event!r} while {self.pending!r}"
                self.pending = event
        assert self.session.busy == (self.pending is not None and not self.hung_up)
        phase = self.session.phase
        if phase is not Phase.CLOSED:
            assert (self.session.user is not None) == (phase is Phase.LOGGED_IN)
        assert self.replies <= self.allowed, (self.replies, self.allowed)

    def step(self, step: Step) -> None:
        session = self.session
        match step.kind:
            case "feed":
                session.receive_data(step.data)
                # Each line ends at a LF; a line over the limit may be
                # answered before its end arrives.
                self.allowed += step.data.count(b"\n") + len(step.data) // LIMIT + 1
            case "complete" if self.pending is not None:
                request, self.pending = self.pending, None
                if isinstance(request, Transfer):
                    request.progress.moved += step.choice * 1000
                    if step.choice % 2:
                        opening = session.opening(request, "name\r\n1")
                        assert check_replies(opening) == 1
                        self.outputs.append(opening)
                session.complete(request, outcome_for(request, step.choice))
            case "shutdown":
                self.allowed += 1
                session.shutdown(now=step.choice == 1)
            case "timeout" if not session.busy:
                self.allowed += 1
                session.timed_out()
        self.drain()


@contextlib.contextmanager
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the server's loggers, down to DEBUG, while the block runs."""
    found: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("ftp_cluster")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password leaked: {text[:200]!r}"


@given(steps=STEPS, early=st.binary(max_size=32))
def test_the_core_survives_any_byte_stream(steps: list[Step], early: bytes) -> None:
    driver = Driver()
    with log_records() as records:
        driver.session.receive_data(early)
        driver.drain()
        assert driver.replies == 0  # nothing before admission
        driver.allowed += early.count(b"\n") + len(early) // LIMIT + 1
        driver.session.admitted()
        driver.drain()
        for step in steps:
            driver.step(step)
    for output in driver.outputs:
        _no_secret(output.decode("utf-8", "surrogateescape"))
    for record in records:
        _no_secret(record.getMessage())
        _no_secret(repr(record.args))
    assert isinstance(driver.session.cwd, PurePosixPath)
