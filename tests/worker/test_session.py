"""The protocol core alone: lines in, replies and requests out, outcomes fed back."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from ftp_cluster.shared.users import Permission, User, UserTable
from ftp_cluster.worker.pathio.base import FileInfo
from ftp_cluster.worker.protocol.commands import CommandError, parse_command
from ftp_cluster.worker.protocol.paths import resolve
from ftp_cluster.worker.protocol.replies import Reply
from ftp_cluster.worker.protocol.requests import (
    Abort,
    Authenticate,
    Close,
    DataEndpoint,
    Done,
    Failed,
    Failure,
    FileChange,
    FileQuery,
    Logout,
    OpenPassive,
    Transfer,
)
from ftp_cluster.worker.protocol.session import Phase, Session, SessionOptions, Step

P = PurePosixPath
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


def dir_info(name: str = "x") -> FileInfo:
    return FileInfo(name, True, 0, 0.0, 0.0, 0o40755, 2, "1g1")


def file_info(name: str = "f", size: int = 10) -> FileInfo:
    return FileInfo(name, False, size, 86400.0, 0.0, 0o100644, 1, "1g2")


def session(peer: str = "127.0.0.1") -> Session:
    return Session(SessionOptions(UserTable([GUIDO, ANON]), "hello there", "UNIX Type: L8"), peer)


def send(s: Session, line: str) -> Step:
    return s.handle(parse_command(line.encode()))


def reply(step: Step) -> Reply:
    assert isinstance(step, Reply), step
    return step


def logged_in(login: str = "Guido") -> Session:
    s = session()
    step = send(s, f"USER {login}")
    if isinstance(step, Reply):
        assert step.code == 331
        step = send(s, "PASS secret")
    assert isinstance(step, Authenticate)
    assert s.complete(step, Done()).code == 230
    return s


def test_greeting_and_syst_use_the_configured_texts() -> None:
    s = session()
    assert s.greeting().encode() == b"220 hello there\r\n"
    assert reply(send(s, "SYST")).encode() == b"215 UNIX Type: L8\r\n"


def test_login_with_password_asks_for_authentication_then_goes_home() -> None:
    s = session()
    assert reply(send(s, "USER Guido")).code == 331
    step = send(s, "PASS secret")
    assert step == Authenticate(GUIDO, "secret")
    assert s.complete(step, Done()).code == 230
    assert reply(send(s, "PWD")).lines == ('"/Guido" is the current directory',)


def test_bad_password_and_user_limit_are_530() -> None:
    s = session()
    send(s, "USER Guido")
    step = send(s, "PASS wrong")
    assert isinstance(step, Authenticate)
    assert s.complete(step, Failed(Failure.BAD_PASSWORD)).code == 530
    assert s.phase is Phase.AWAIT_USER
    send(s, "USER Guido")
    step = send(s, "PASS secret")
    assert isinstance(step, Authenticate)
    assert s.complete(step, Failed(Failure.USER_LIMIT)).code == 530


def test_anonymous_takes_any_unknown_name_without_password() -> None:
    s = session()
    step = send(s, "USER whoever")
    assert step == Authenticate(ANON, None)


def test_user_on_logged_in_session_starts_a_new_login() -> None:
    s = logged_in()
    step = send(s, "USER Guido")
    assert isinstance(step, Logout)
    assert s.complete(step, Done()).code == 331
    assert reply(send(s, "PWD")).code == 530


def test_commands_need_login_and_unknown_ones_are_502() -> None:
    s = session()
    assert reply(send(s, "PWD")).code == 530
    assert reply(send(s, "RETR x")).code == 530
    assert reply(send(s, "XYZZY")).code == 502
    assert reply(send(s, "PASS x")).code == 503
    with pytest.raises(CommandError):
        parse_command(b"12 34")


@pytest.mark.parametrize(
    ("cwd", "arg", "expected"),
    [
        ("/", "../../..", "/"),
        ("/a/b", "..", "/a"),
        ("/a", "b/./c//d", "/a/b/c/d"),
        ("/a", "/x/../y", "/y"),
        ("/a", "../../etc/passwd", "/etc/passwd"),
        ("/", "", "/"),
    ],
)
def test_virtual_paths_are_normalised_lexically(cwd: str, arg: str, expected: str) -> None:
    assert resolve(P(cwd), arg) == P(expected)


def test_cwd_checks_permission_then_asks_for_the_directory() -> None:
    s = logged_in()
    assert reply(send(s, "CWD /")).code == 550  # "/" is not readable for Guido
    step = send(s, "CWD sub")
    assert step == FileQuery("CWD", P("/Guido/sub"))
    assert s.complete(step, Failed(Failure.NOT_FOUND)).code == 550
    assert s.complete(step, Done(file_info())).code == 550
    assert s.complete(step, Done(dir_info())).code == 250
    assert reply(send(s, "PWD")).lines[0].startswith('"/Guido/sub"')


def test_permissions_resolve_by_longest_prefix_for_every_command() -> None:
    s = logged_in()
    assert reply(send(s, "STOR ro/file")).code == 550
    assert reply(send(s, "DELE ro/file")).code == 550
    assert reply(send(s, "MKD ro/new")).code == 550
    # MKD checks the target path itself: /Guido/rw-dir is writable, /Guido/ro is not.
    assert send(s, "MKD new") == FileChange("MKD", P("/Guido/new"))
    assert reply(send(s, "RMD /Guido/ro")).code == 550
    assert reply(send(s, "RETR /etc/passwd")).code == 550
    # A sibling whose name only starts like a permitted path is not covered.
    assert reply(send(s, "MKD /Guidonot")).code == 550


def test_rest_is_cleared_by_any_other_command() -> None:
    s = logged_in()
    send(s, "PASV")
    s.endpoint = DataEndpoint(passive=True)
    assert reply(send(s, "REST 100")).code == 350
    step = send(s, "RETR f")
    assert isinstance(step, Transfer) and step.offset == 100
    s.endpoint = DataEndpoint(passive=True)
    send(s, "REST 100")
    send(s, "NOOP")
    step = send(s, "STOR f")
    assert isinstance(step, Transfer) and step.offset == 0


def test_transfer_needs_a_data_endpoint_and_completes_with_226() -> None:
    s = logged_in()
    assert reply(send(s, "RETR f")).code == 425
    step = send(s, "EPSV")
    assert isinstance(step, OpenPassive) and step.extended
    assert s.complete(step, Done(("127.0.0.1", 50001))).lines == (
        "entering extended passive mode (|||50001|)",
    )
    step = send(s, "PASV")
    assert isinstance(step, OpenPassive)
    assert s.complete(step, Done(("10.1.2.3", 50001))).lines == (
        "entering passive mode (10,1,2,3,195,81)",
    )
    transfer = send(s, "RETR f")
    assert isinstance(transfer, Transfer)
    assert transfer.preliminary.code == 150
    assert s.complete(transfer, Done(10)).code == 226
    assert s.endpoint is None  # a data endpoint serves one transfer


def test_transfer_failures_map_to_ftp_codes() -> None:
    s = logged_in()
    s.endpoint = DataEndpoint(passive=True)
    transfer = send(s, "RETR f")
    assert isinstance(transfer, Transfer)
    codes = {
        Failure.NOT_FOUND: 550,
        Failure.NO_DATA_CONNECTION: 425,
        Failure.ABORTED: 426,
        Failure.CONNECTION_LOST: 426,
        Failure.IO_ERROR: 451,
        Failure.NO_PASSIVE_PORT: 421,
    }
    for failure, code in codes.items():
        assert s.complete(transfer, Failed(failure)).code == code


def test_port_refuses_bounce_and_privileged_ports() -> None:
    s = logged_in()
    assert reply(send(s, "PORT 127,0,0,2,200,10")).code == 504  # a third party
    assert reply(send(s, "PORT 127,0,0,1,0,21")).code == 504  # privileged
    assert reply(send(s, "PORT 127,0,0,1,200,10")).code == 200
    assert s.endpoint == DataEndpoint(passive=False, host="127.0.0.1", port=200 * 256 + 10)
    assert reply(send(s, "EPRT |2|::1|5000|")).code == 504
    assert reply(send(s, "PORT 1,2,3")).code == 501


def test_port_on_ipv6_session_accepts_own_address() -> None:
    s = Session(session().options, "::1")
    send(s, "USER Guido")
    step = send(s, "PASS secret")
    assert isinstance(step, Authenticate)
    s.complete(step, Done())
    assert reply(send(s, "EPRT |2|::1|5000|")).code == 200


def test_mlst_and_size_and_mdtm() -> None:
    s = logged_in()
    step = send(s, "MLST f")
    assert isinstance(step, FileQuery) and step == FileQuery("MLST", P("/Guido/f"))
    mlst = s.complete(step, Done(file_info()))
    assert mlst.code == 250
    assert "type=file;size=10;" in mlst.lines[1] and mlst.lines[1].endswith(" /Guido/f")
    assert "perm=radfw;" in mlst.lines[1]
    assert s.complete(step, Failed(Failure.NOT_FOUND)).code == 550
    size = send(s, "SIZE f")
    assert isinstance(size, FileQuery)
    assert s.complete(size, Done(file_info(size=1234))).lines == ("1234",)
    mdtm = send(s, "MDTM f")
    assert isinstance(mdtm, FileQuery)
    assert s.complete(mdtm, Done(file_info())).lines == ("19700102000000",)


def test_rename_needs_rnfr_first() -> None:
    s = logged_in()
    assert reply(send(s, "RNTO b")).code == 503
    assert reply(send(s, "RNFR a")).code == 350
    assert send(s, "RNTO b") == FileChange("RNTO", P("/Guido/a"), P("/Guido/b"))
    send(s, "RNFR a")
    send(s, "NOOP")
    assert reply(send(s, "RNTO b")).code == 503


def test_abort_and_quit() -> None:
    s = logged_in()
    step = send(s, "ABOR")
    assert isinstance(step, Abort)
    assert s.complete(step, Done()).code == 226
    quit_step = send(s, "QUIT")
    assert isinstance(quit_step, Close) and quit_step.reply.code == 221


def test_multiline_replies_and_no_injection() -> None:
    assert Reply(211, ("a", "b", "c")).encode() == b"211-a\r\n b\r\n211 c\r\n"
    assert Reply.of(257, '"/x\r\n226 y"').encode() == b'257 "/x  226 y"\r\n'


def test_pwd_quotes_double_quotes() -> None:
    s = logged_in()
    step = send(s, 'CWD a"b')
    assert isinstance(step, FileQuery)
    s.complete(step, Done(dir_info()))
    assert reply(send(s, "PWD")).lines[0].startswith('"/Guido/a""b"')


def test_pass_is_never_in_the_loggable_form() -> None:
    assert "secret" not in parse_command(b"PASS secret").redacted()
