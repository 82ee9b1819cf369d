"""The protocol core's side of disk quotas, byte by byte: 552, 452, STAT and SITE QUOTA."""

from __future__ import annotations

from ftp_cluster.shared.users import User, UserTable
from ftp_cluster.worker.protocol.requests import (
    Authenticate,
    DataEndpoint,
    Done,
    Failed,
    Failure,
    QuotaQuery,
    QuotaStatus,
    Transfer,
)
from ftp_cluster.worker.protocol.session import SessionOptions
from tests.worker.wire import Wire, connected

LIMITED = User("carol", "quota-core-pw", quota_bytes=1000, quota_files=3)
OWN_ZERO = User("dave", "quota-core-pw", quota_bytes=0)  # 0: unlimited, whatever the default
FREE = User("erin", "quota-core-pw")


def options(default_bytes: int | None = None) -> SessionOptions:
    return SessionOptions(
        UserTable([LIMITED, OWN_ZERO, FREE]), "hello", default_quota_bytes=default_bytes
    )


def logged_in(user: User, default_bytes: int | None = None) -> Wire:
    wire = connected(options=options(default_bytes))
    assert wire.reply(f"USER {user.login}").startswith("331")
    request = wire.request("PASS quota-core-pw")
    assert isinstance(request, Authenticate)
    assert wire.complete(Done(user)) == ["230 login successful"]
    return wire


def test_stat_asks_for_the_usage_and_adds_a_quota_line() -> None:
    wire = logged_in(LIMITED)
    assert wire.request("STAT") == QuotaQuery("STAT")
    (reply,) = wire.complete(Done(QuotaStatus(250, 2, 1000, 3)))
    assert reply.split("\n") == [
        "211-status:",
        " logged in as carol",
        " TYPE binary",
        " quota: 250 of 1000 bytes, 2 of 3 files used",
        " no transfer",
        "211 end",
    ]


def test_site_quota_replies_in_one_line() -> None:
    wire = logged_in(LIMITED)
    assert wire.request("SITE quota") == QuotaQuery("SITE")
    reply = wire.complete(Done(QuotaStatus(5, 1, 1000, None)))
    assert reply == ["200 quota: 5 of 1000 bytes, 1 of unlimited files used"]
    assert wire.request("SITE QUOTA") == QuotaQuery("SITE")
    reply = wire.complete(Done(QuotaStatus(None, None, 1000, 3)))
    assert reply == ["200 quota: usage not known yet (being counted)"]
    assert wire.reply("SITE CHMOD 755 f") == "504 SITE CHMOD not understood (SITE QUOTA is)"
    assert wire.reply("SITE") == "501 SITE needs an argument"


def test_users_without_a_quota_get_answers_at_once() -> None:
    for user, default in ((FREE, None), (OWN_ZERO, 500)):
        wire = logged_in(user, default)
        assert wire.reply("SITE QUOTA") == "200 quota: none (unlimited)"
        status = wire.reply("STAT")
        assert status.startswith("211-status:") and "quota" not in status


def test_the_server_default_applies_to_users_without_their_own() -> None:
    wire = logged_in(FREE, default_bytes=500)
    assert wire.request("SITE QUOTA") == QuotaQuery("SITE")


def test_site_needs_a_login() -> None:
    wire = connected(options=options())
    assert wire.reply("SITE QUOTA") == "530 please log in with USER and PASS"


def test_upload_past_the_quota_is_552_and_unknown_tally_452() -> None:
    wire = logged_in(LIMITED)
    for failure, reply in (
        (Failure.QUOTA_EXCEEDED, "552 exceeded storage allocation (disk quota)"),
        (
            Failure.QUOTA_UNAVAILABLE,
            "452 insufficient storage space: disk quota cannot be checked now",
        ),
    ):
        wire.request("PASV")
        assert wire.complete(Done(40000))[0].startswith("227")
        transfer = wire.request("STOR f")
        assert isinstance(transfer, Transfer) and transfer.endpoint == DataEndpoint(passive=True)
        assert wire.complete(Failed(failure)) == [reply]
        # The session goes on as after any failed transfer.
        assert wire.reply("NOOP") == "200 ok"
