"""The protocol core alone: bytes in; replies, requests and signals out; outcomes fed back."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from ftp_cluster.shared.limits.base import Refusal
from ftp_cluster.shared.users import UserTable
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
    ListPath,
    Logout,
    OpenPassive,
    Signal,
    StartTLS,
    Transfer,
)
from ftp_cluster.worker.protocol.session import (
    Phase,
    ProtocolMisuse,
    Session,
    SessionOptions,
)
from tests.worker.wire import (
    ANON,
    GUIDO,
    OPTIONS,
    Wire,
    connected,
    dir_info,
    file_info,
    listing,
    logged_in,
)

P = PurePosixPath


def with_endpoint(wire: Wire) -> None:
    assert isinstance(wire.request("EPSV"), OpenPassive)
    assert wire.complete(Done(50001)) == ["229 entering extended passive mode (|||50001|)"]


def running_transfer(wire: Wire, line: str = "RETR f") -> Transfer:
    with_endpoint(wire)
    transfer = wire.request(line)
    assert isinstance(transfer, Transfer)
    return transfer


# -- the connection's life ----------------------------------------------------------


def test_nothing_is_said_before_admission_and_early_commands_wait() -> None:
    wire = Wire(Session(OPTIONS))
    assert wire.feed(b"SYST\r\nNOOP\r\n") == []
    wire.session.admitted()
    wire.drain()
    assert wire.replies == ["220 hello there", "215 UNIX Type: L8", "200 ok"]


def test_refusal_at_connect_is_421_and_hangs_up_without_reading_commands() -> None:
    wire = Wire(Session(OPTIONS))
    wire.feed(b"USER Guido\r\n")
    wire.session.refused(Refusal.IP_FULL)
    wire.drain()
    assert wire.replies == ["421 too many connections from your address"]
    assert wire.signals == [Signal.HANGUP]
    assert wire.feed(b"NOOP\r\n") == []


def test_shutdown_of_an_idle_session_is_421_at_once() -> None:
    wire = logged_in()
    wire.session.shutdown()
    wire.drain()
    assert wire.replies[-1] == "421 server shutting down" and wire.signals == [Signal.HANGUP]


def test_shutdown_during_a_transfer_waits_for_its_reply() -> None:
    wire = logged_in()
    running_transfer(wire)
    wire.session.shutdown()
    assert wire.drain() == []
    assert wire.complete(Done()) == ["226 transfer complete", "421 server shutting down"]
    assert wire.signals == [Signal.HANGUP]


def test_fast_stop_hangs_up_now_and_a_late_outcome_is_ignored() -> None:
    wire = logged_in()
    transfer = running_transfer(wire)
    wire.session.shutdown(now=True)
    wire.drain()
    assert wire.replies[-1] == "421 server shutting down" and wire.signals == [Signal.HANGUP]
    wire.session.complete(transfer, Done())  # the I/O layer finishing late
    assert wire.drain() == []


def test_idle_timeout_is_421() -> None:
    wire = logged_in()
    wire.session.timed_out()
    wire.drain()
    assert wire.replies[-1] == "421 idle timeout, closing control connection"
    assert wire.signals == [Signal.HANGUP]


# -- framing ----------------------------------------------------------------------


def test_pipelined_commands_are_answered_in_order_and_split_lines_wait() -> None:
    wire = connected()
    wire.feed(b"SYST\r\nNO")
    assert wire.replies[1:] == ["215 UNIX Type: L8"]
    wire.feed(b"OP\nHELP\r")
    assert wire.replies[2] == "200 ok" and len(wire.replies) == 3
    wire.feed(b"\n")
    assert wire.replies[3].startswith("214-commands:")


def test_an_overlong_line_gets_one_500_even_in_pieces_and_the_next_command_works() -> None:
    options = SessionOptions(OPTIONS.users, "hi", max_line_length=64)
    wire = Wire(Session(options))
    wire.session.admitted()
    for _ in range(10):
        wire.feed(b"x" * 50)  # no line end yet: kept only up to the limit
        assert wire.session.backlog <= 66
    wire.feed(b"tail\r\nNOOP\r\n")
    assert wire.replies[1:] == ["500 command line too long (over 64 bytes)", "200 ok"]
    wire.feed(b"S" * 70 + b"\r\n")
    assert wire.replies[-1].startswith("500 command line too long")


def test_telnet_commands_are_taken_out_of_lines() -> None:
    wire = logged_in()
    # RFC 959 urgent ABOR: IAC IP, then IAC DM (Synch), then the command.
    assert isinstance(wire.request("\udcff\udcf4\udcff\udcf2ABOR"), Abort)
    wire.complete(Done())
    # IAC IAC is a literal 0xFF; option negotiation is dropped.
    query = wire.request("SIZE a\udcff\udcffb\udcff\udcfb\x01")
    assert query == FileQuery("SIZE", P("/Guido/a\udcffb"))


def test_garbage_is_500_and_unknown_verbs_502() -> None:
    wire = connected()
    assert wire.reply("12 34").startswith("500")
    assert wire.reply("").startswith("500")
    assert wire.reply("XYZZY") == "502 command XYZZY not implemented"
    with pytest.raises(CommandError):
        parse_command(b"12 34")


# -- login ---------------------------------------------------------------------------


def test_login_with_password_asks_for_authentication_then_goes_home() -> None:
    wire = connected()
    assert wire.reply("USER Guido") == "331 password required"
    assert wire.request("PASS secret") == Authenticate("Guido", "secret")
    assert wire.complete(Done(GUIDO)) == ["230 login successful"]
    assert wire.reply("PWD") == '257 "/Guido" is the current directory'


def test_unknown_users_are_asked_for_a_password_and_refused_like_a_bad_one() -> None:
    wire = connected(options=SessionOptions(UserTable([GUIDO]), "hi"))
    assert wire.reply("USER nobody") == "331 password required"
    assert wire.request("PASS x") == Authenticate("nobody", "x")
    unknown = wire.complete(Failed(Failure.UNKNOWN_USER))
    wire.reply("USER Guido")
    wire.request("PASS wrong")
    assert wire.complete(Failed(Failure.BAD_PASSWORD)) == unknown == ["530 login incorrect"]
    assert wire.session.phase is Phase.AWAIT_USER


def test_user_limit_is_530_and_limits_backend_down_is_421_and_hangs_up() -> None:
    wire = connected()
    wire.reply("USER Guido")
    wire.request("PASS secret")
    assert wire.complete(Failed(Failure.USER_LIMIT)) == ["530 too many connections for this user"]
    wire.reply("USER Guido")
    wire.request("PASS secret")
    assert wire.complete(Failed(Failure.UNAVAILABLE))[0].startswith("421")
    assert wire.signals == [Signal.HANGUP]


def test_anonymous_takes_any_unknown_name_without_password() -> None:
    assert connected().request("USER whoever") == Authenticate("whoever", None)


def test_pass_when_logged_in_is_503_and_before_user_too() -> None:
    assert logged_in().reply("PASS secret") == "503 already logged in"
    assert connected().reply("PASS x") == "503 send USER first"


def test_user_on_logged_in_session_logs_out_then_starts_again() -> None:
    wire = logged_in()
    assert isinstance(wire.request("USER Guido"), Logout)
    assert wire.complete(Done()) == ["331 password required"]
    assert wire.reply("PWD").startswith("530")
    wire = logged_in()
    assert isinstance(wire.request("USER someone"), Logout)
    assert wire.complete(Done()) == []
    assert wire.pending == Authenticate("someone", None)


def test_commands_need_login() -> None:
    wire = connected()
    for line in ("PWD", "RETR x", "STAT /", "MFMT 20200101000000 f", "STOU"):
        assert wire.reply(line).startswith("530"), line


def test_passwords_are_in_no_repr() -> None:
    assert "secret" not in repr(Authenticate("Guido", "secret"))
    assert "secret" not in repr(parse_command(b"PASS secret"))
    assert "secret" not in parse_command(b"PASS secret").redacted()
    assert "secret" not in repr(GUIDO)


# -- paths and permissions ---------------------------------------------------------


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
    wire = logged_in()
    assert wire.reply("CWD /") == "550 permission denied"  # "/" is not readable for Guido
    assert wire.request("CWD sub") == FileQuery("CWD", P("/Guido/sub"))
    assert wire.complete(Failed(Failure.NOT_FOUND)) == ["550 no such file or directory"]
    wire.request("CWD sub")
    assert wire.complete(Done(file_info())) == ["550 not a directory"]
    wire.request("CWD sub")
    assert wire.complete(Done(dir_info())) == ["250 directory changed to /Guido/sub"]
    assert wire.reply("PWD").startswith('257 "/Guido/sub"')


def test_permissions_resolve_by_longest_prefix_for_every_command() -> None:
    wire = logged_in()
    with_endpoint(wire)
    for line in ("STOR ro/file", "DELE ro/file", "MKD ro/new", "RMD /Guido/ro", "RETR /etc/passwd"):
        assert wire.reply(line) == "550 permission denied", line
    assert wire.reply("MFMT 20200101000000 ro/f") == "550 permission denied"
    assert wire.request("MKD new") == FileChange("MKD", P("/Guido/new"))
    wire.complete(Done())
    # A sibling whose name only starts like a permitted path is not covered.
    assert wire.reply("MKD /Guidonot") == "550 permission denied"


def test_pwd_quotes_double_quotes() -> None:
    wire = logged_in()
    wire.request('CWD a"b')
    wire.complete(Done(dir_info()))
    assert wire.reply("PWD").startswith('257 "/Guido/a""b"')


def test_rename_needs_rnfr_first() -> None:
    wire = logged_in()
    assert wire.reply("RNTO b") == "503 send RNFR first"
    assert wire.reply("RNFR a") == "350 ready for RNTO"
    assert wire.request("RNTO b") == FileChange("RNTO", P("/Guido/a"), P("/Guido/b"))
    wire.complete(Done())
    wire.reply("RNFR a")
    wire.reply("NOOP")
    assert wire.reply("RNTO b") == "503 send RNFR first"


# -- queries ---------------------------------------------------------------------------


def test_mlst_size_and_mdtm() -> None:
    wire = logged_in()
    assert wire.request("MLST f") == FileQuery("MLST", P("/Guido/f"))
    (mlst,) = wire.complete(Done(file_info()))
    assert mlst.startswith("250-") and "type=file;size=10;" in mlst
    assert "perm=radfw;" in mlst and mlst.split("\n")[1].endswith(" /Guido/f")
    wire.request("SIZE f")
    assert wire.complete(Done(file_info(size=1234))) == ["213 1234"]
    wire.request("MDTM f")
    assert wire.complete(Done(file_info())) == ["213 19700102000000"]


def test_mlst_create_is_the_birth_time_and_absent_when_unknown() -> None:
    wire = logged_in()
    wire.request("MLST f")
    (unknown,) = wire.complete(Done(file_info()))
    assert "create=" not in unknown and "modify=19700102000000;" in unknown
    wire.request("MLST f")
    (known,) = wire.complete(Done(file_info(created=3600.0)))
    assert "create=19700101010000;" in known


def test_size_in_ascii_mode_is_refused_rather_than_wrong() -> None:
    wire = logged_in()
    assert wire.reply("TYPE A") == "200 type set to A"
    assert wire.reply("SIZE f") == "550 SIZE not allowed in ASCII mode"
    wire.reply("TYPE I")
    assert isinstance(wire.request("SIZE f"), FileQuery)


def test_mfmt_sets_the_modification_time_in_utc() -> None:
    wire = logged_in()
    assert "MFMT" in wire.reply("FEAT")
    request = wire.request("MFMT 20200229123456 sub/f")
    assert request == FileChange("MFMT", P("/Guido/sub/f"), mtime=1582979696.0)
    assert wire.complete(Done()) == ["213 Modify=20200229123456; /Guido/sub/f"]
    for bad in ("MFMT 2020 f", "MFMT 20201301000000 f", "MFMT 20200101000000", "MFMT x f"):
        assert wire.reply(bad).startswith("501"), bad
    wire.request("MFMT 20200101000000 f")
    assert wire.complete(Failed(Failure.NOT_FOUND)) == ["550 no such file or directory"]


def test_stat_of_a_path_is_a_listing_over_the_control_connection() -> None:
    wire = logged_in()
    assert wire.reply("STAT /etc") == "550 permission denied"
    assert wire.request("STAT -l sub") == ListPath("STAT", P("/Guido/sub"))
    (reply,) = wire.complete(Done(listing(file_info("a", 5), dir_info("d"))))
    lines = reply.split("\n")
    assert lines[0] == "213-status of /Guido/sub:" and lines[-1] == "213 end"
    assert lines[1].startswith(" -rw-r--r--") and lines[1].endswith(" a")
    assert lines[2].startswith(" drwxr-xr-x") and lines[2].endswith(" d")
    assert wire.reply("STAT").startswith("211-status:")


# -- data connections and transfers ------------------------------------------------------


def test_rest_is_cleared_by_any_other_command() -> None:
    wire = logged_in()
    with_endpoint(wire)
    assert wire.reply("REST 100") == "350 restarting at 100, send RETR or STOR"
    transfer = wire.request("RETR f")
    assert isinstance(transfer, Transfer) and transfer.offset == 100
    wire.complete(Done())
    with_endpoint(wire)
    wire.reply("REST 100")
    wire.reply("NOOP")
    transfer = wire.request("STOR f")
    assert isinstance(transfer, Transfer) and transfer.offset == 0


def test_transfer_needs_a_data_endpoint_and_completes_with_226() -> None:
    wire = logged_in()
    assert wire.reply("RETR f") == "425 use PASV, EPSV, PORT or EPRT first"
    assert wire.reply("LIST") == "425 use PASV, EPSV, PORT or EPRT first"
    assert wire.request("PASV") == OpenPassive(extended=False)
    assert wire.complete(Done(50001)) == ["227 entering passive mode (127,0,0,1,195,81)"]
    transfer = wire.request("RETR f")
    assert isinstance(transfer, Transfer) and not transfer.ascii
    opening = wire.session.opening(transfer).decode()
    assert opening == "150 opening BINARY mode data connection for /Guido/f\r\n"
    assert wire.complete(Done()) == ["226 transfer complete"]
    assert wire.reply("RETR f").startswith("425")  # a data endpoint serves one transfer


def test_pasv_announces_the_masquerade_address_and_is_522_on_ipv6() -> None:
    wire = connected(options=SessionOptions(OPTIONS.users, "hi", masquerade_address="10.1.2.3"))
    wire.request("USER x")
    wire.complete(Done(ANON))
    wire.request("PASV")
    assert wire.complete(Done(50001)) == ["227 entering passive mode (10,1,2,3,195,81)"]
    wire = connected("::1", local="::1")
    wire.request("USER x")
    wire.complete(Done(ANON))
    assert wire.reply("PASV") == "522 PASV is IPv4 only here, use EPSV"
    assert isinstance(wire.request("EPSV"), OpenPassive)


def test_transfer_failures_map_to_ftp_codes() -> None:
    codes = {
        Failure.NOT_FOUND: "550",
        Failure.NO_DATA_CONNECTION: "425",
        Failure.NO_PASSIVE_PORT: "425",
        Failure.ABORTED: "426",
        Failure.CONNECTION_LOST: "426",
        Failure.IO_ERROR: "451",
        Failure.TIMEOUT: "451",
    }
    for failure, code in codes.items():
        wire = logged_in()
        running_transfer(wire)
        (reply,) = wire.complete(Failed(failure))
        assert reply.startswith(code), (failure, reply)


def test_type_a_transfers_are_ascii_and_stou_makes_a_unique_file() -> None:
    wire = logged_in()
    wire.reply("TYPE A")
    transfer = running_transfer(wire, "STOR f")
    assert transfer.ascii and transfer.is_upload
    wire.complete(Done())
    wire.reply("TYPE I")
    stou = running_transfer(wire, "STOU")
    assert stou.kind == "STOU" and stou.path == P("/Guido/ftp-upload") and not stou.ascii
    assert wire.session.opening(stou, "ftp-upload.1a2b") == b"150 FILE: ftp-upload.1a2b\r\n"
    wire.complete(Done())
    assert running_transfer(wire, "STOU ../../x/hint.txt").path == P("/Guido/hint.txt")
    wire.complete(Done())
    wire.request("CWD ro")
    wire.complete(Done(dir_info()))
    with_endpoint(wire)
    assert wire.reply("STOU") == "550 permission denied"


def test_list_reads_the_path_then_transfers_the_rendered_listing() -> None:
    wire = logged_in()
    with_endpoint(wire)
    assert wire.request("LIST -la sub") == ListPath("LIST", P("/Guido/sub"))
    assert wire.complete(Done(listing(file_info("a\r\nb", 5)))) == []
    transfer = wire.pending
    assert isinstance(transfer, Transfer) and transfer.kind == "LIST"
    assert transfer.payload is not None
    assert transfer.payload.count(b"\r\n") == 1 and transfer.payload.endswith(b" a  b\r\n")
    assert wire.complete(Done()) == ["226 transfer complete"]
    with_endpoint(wire)
    wire.request("MLSD")
    wire.complete(Done(listing(file_info("a"))))
    assert isinstance(wire.pending, Transfer) and wire.pending.payload is not None
    lines = wire.pending.payload.decode().split("\r\n")
    assert lines[0].startswith("type=cdir;") and lines[1].startswith("type=pdir;")
    assert lines[2].startswith("type=file;size=10;") and lines[2].endswith(" a")
    wire.complete(Done())
    with_endpoint(wire)
    wire.request("MLSD f")
    assert wire.complete(Done(listing().__class__(file_info(), (file_info(),), dir_info(), 0))) == [
        "550 not a directory"
    ]


def test_port_refuses_bounce_and_privileged_ports() -> None:
    wire = logged_in()
    assert wire.reply("PORT 127,0,0,2,200,10").startswith("504")  # a third party
    assert wire.reply("PORT 127,0,0,1,0,21").startswith("504")  # privileged
    assert wire.reply("PORT 127,0,0,1,200,10") == "200 active data connection accepted"
    assert wire.session.endpoint == DataEndpoint(False, "127.0.0.1", 200 * 256 + 10)
    assert wire.reply("EPRT |2|::1|5000|").startswith("504")
    assert wire.reply("PORT 1,2,3").startswith("501")
    assert wire.reply("EPRT |1|::1|5000|").startswith("501")  # not an IPv4 address


def test_port_on_ipv6_session_accepts_own_address() -> None:
    wire = connected("::1", local="::1")
    wire.reply("USER Guido")
    wire.request("PASS secret")
    wire.complete(Done(GUIDO))
    assert wire.reply("EPRT |2|::1|5000|") == "200 active data connection accepted"


def test_epsv_all_refuses_every_other_way_to_a_data_connection() -> None:
    wire = logged_in()
    assert wire.reply("EPSV ALL") == "200 EPSV ALL accepted"
    for line in ("PASV", "PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|5000|"):
        assert wire.reply(line) == "503 EPSV ALL is in effect: use EPSV", line
    assert isinstance(wire.request("EPSV"), OpenPassive)


# -- while a transfer runs ---------------------------------------------------------


def test_abor_during_a_transfer_cancels_it_then_426_and_226() -> None:
    wire = logged_in()
    running_transfer(wire)
    wire.send("ABOR")
    assert wire.signals == [Signal.CANCEL] and wire.replies[-1].startswith("229")
    assert wire.complete(Failed(Failure.ABORTED)) == [
        "426 transfer aborted",
        "226 abort successful",
    ]
    assert wire.reply("NOOP") == "200 ok"


def test_abor_that_comes_too_late_gets_226_twice() -> None:
    wire = logged_in()
    running_transfer(wire)
    wire.send("ABOR")
    assert wire.complete(Done()) == ["226 transfer complete", "226 abort successful"]


def test_abor_with_nothing_running_closes_the_listener() -> None:
    wire = logged_in()
    with_endpoint(wire)
    assert isinstance(wire.request("ABOR"), Abort)
    assert wire.complete(Done()) == ["226 abort successful"]
    assert wire.reply("RETR f").startswith("425")


def test_stat_during_a_transfer_reports_its_progress() -> None:
    wire = logged_in()
    transfer = running_transfer(wire)
    transfer.progress.moved = 12345
    wire.send("STAT")
    (status,) = wire.replies[-1:]
    assert status.startswith("213-") and "RETR /Guido/f (binary): 12345 bytes so far" in status
    assert wire.complete(Done()) == ["226 transfer complete"]


def test_other_commands_wait_for_the_transfer_and_keep_their_order() -> None:
    wire = logged_in()
    running_transfer(wire)
    wire.send("NOOP")
    wire.send("SYST")
    wire.send("STAT")
    assert wire.replies[-1].startswith("213-")  # STAT jumps the queue
    assert wire.complete(Done()) == ["226 transfer complete", "200 ok", "215 UNIX Type: L8"]


def test_quit_during_a_transfer_says_goodbye_after_it() -> None:
    wire = logged_in()
    running_transfer(wire)
    wire.send("QUIT")
    wire.send("NOOP")  # after QUIT: never answered
    assert wire.replies[-1].startswith("229")
    assert wire.complete(Done()) == ["226 transfer complete"]
    assert isinstance(wire.pending, Close)
    assert wire.complete(Done()) == ["221 goodbye"]
    assert wire.signals == [Signal.HANGUP]


def test_no_second_request_while_one_runs() -> None:
    wire = logged_in()
    wire.request("CWD a")
    wire.send("CWD b")  # waits: a query is no transfer, so nothing interrupts it
    assert wire.replies[-1] == "230 login successful"
    with pytest.raises(ProtocolMisuse):
        wire.session.complete(FileQuery("CWD", P("/Guido/b")), Done(dir_info()))
    assert wire.complete(Done(dir_info())) == ["250 directory changed to /Guido/a"]
    assert wire.pending == FileQuery("CWD", P("/Guido/a/b"))  # from the new directory


def test_quit_releases_then_says_goodbye_and_hangs_up() -> None:
    wire = logged_in()
    assert isinstance(wire.request("QUIT"), Close)
    assert wire.complete(Done()) == ["221 goodbye"]
    assert wire.signals == [Signal.HANGUP] and wire.session.closed


def test_multiline_replies_and_no_injection() -> None:
    assert Reply(211, ("a", "b", "c")).encode() == b"211-a\r\n b\r\n211 c\r\n"
    assert Reply.of(257, '"/x\r\n226 y"').encode() == b'257 "/x  226 y"\r\n'


# -- FTPS ------------------------------------------------------------------------------

TLS = SessionOptions(OPTIONS.users, "hi", tls=True)


def test_auth_without_tls_configured_is_502_and_feat_does_not_offer_it() -> None:
    wire = connected()
    assert wire.reply("AUTH TLS") == "502 TLS is not configured on this server"
    assert "AUTH TLS" not in wire.reply("FEAT")


def test_auth_tls_answers_234_then_asks_for_the_handshake_and_drops_plaintext_after_it() -> None:
    wire = connected(options=TLS)
    assert "AUTH TLS" in wire.reply("FEAT") and "PBSZ" in wire.replies[-1]
    # Injected in the same packet as AUTH: must never run (CVE-2011-0411).
    wire.feed(b"AUTH TLS\r\nUSER Guido\r\nPASS secret\r\n")
    assert wire.replies[-1] == "234 AUTH TLS successful, start the handshake"
    assert isinstance(wire.pending, StartTLS)
    assert wire.complete(Done()) == []
    assert wire.session.protected and wire.pending is None
    assert wire.reply("USER Guido") == "331 password required"  # over TLS now
    assert wire.reply("AUTH TLS") == "503 the control connection is already protected"


def test_auth_mechanisms_and_a_failed_handshake() -> None:
    wire = connected(options=TLS)
    assert wire.reply("AUTH KERBEROS").startswith("504")
    assert isinstance(wire.request("AUTH ssl"), StartTLS)
    assert wire.complete(Failed(Failure.IO_ERROR)) == []
    assert wire.signals == [Signal.HANGUP]


def test_pbsz_and_prot_follow_auth() -> None:
    wire = connected(options=TLS)
    assert wire.reply("PBSZ 0") == "503 send AUTH TLS first"
    assert wire.reply("PROT P") == "503 send PBSZ first"
    wire.request("AUTH TLS")
    wire.complete(Done())
    assert wire.reply("PBSZ 0") == "200 PBSZ=0"
    assert wire.reply("PROT S").startswith("536") and wire.reply("PROT E").startswith("536")
    assert wire.reply("PROT X").startswith("504")
    assert wire.reply("PROT P") == "200 data connections protected (TLS)"
    wire.reply("USER Guido")
    wire.request("PASS secret")
    wire.complete(Done(GUIDO))
    assert running_transfer(wire).protected
    wire.complete(Done())
    wire.reply("PROT C")
    assert not running_transfer(wire).protected


def test_tls_required_for_control_and_for_all() -> None:
    control = connected(
        options=SessionOptions(OPTIONS.users, "hi", tls=True, tls_required="control")
    )
    assert control.reply("USER Guido") == "530 log in over TLS: send AUTH TLS first"
    assert control.reply("PASS secret").startswith("530")
    every = connected(options=SessionOptions(OPTIONS.users, "hi", tls=True, tls_required="all"))
    every.request("AUTH TLS")
    every.complete(Done())
    every.reply("USER Guido")
    every.request("PASS secret")
    every.complete(Done(GUIDO))
    with_endpoint(every)
    assert every.reply("RETR f").startswith("522") and every.reply("LIST").startswith("522")
    every.reply("PBSZ 0")
    assert every.reply("PROT C").startswith("534")
    every.reply("PROT P")
    assert running_transfer(every).protected


def test_implicit_tls_starts_protected_with_protected_data() -> None:
    wire = Wire(Session(TLS, implicit_tls=True))
    wire.session.admitted()
    wire.drain()
    assert wire.reply("AUTH TLS").startswith("503")
    wire.reply("USER Guido")
    wire.request("PASS secret")
    wire.complete(Done(GUIDO))
    assert running_transfer(wire).protected
