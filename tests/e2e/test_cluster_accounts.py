"""Users in PostgreSQL on running clusters: the CLI's changes reach every worker
within ``cache_seconds``, two clusters share the users, outages and bad rows.

Each cluster has 4 workers; every check makes 16 logins, which SO_REUSEPORT
spreads over the workers' sockets by source port, so every worker answers some.
"""

from __future__ import annotations

import ftplib
import json
from collections.abc import Callable

import pytest

from tests.e2e.cluster import CLIENT_TIMEOUT
from tests.postgres import PostgresServer
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

WORKERS = 4
ROUNDS = 16
FILE_PASSWORD = "File-Only-Pw-3141"
#: Longer than cache_seconds (1) plus a loaded box's delays.
PROPAGATION = 6.0


def users(url: str, *args: str, stdin: str | None = None) -> str:
    done = cli("users", *args, "--database", url, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def config(url: str, *, namespace: str | None = None, file_user: str = "filed") -> str:
    redis = f'[redis]\nnamespace = "{namespace}"\n\n' if namespace else ""
    return (
        f'{redis}[accounts]\ndatabase = "{url}"\ncache_seconds = 1\n\n'
        f'[[users]]\nlogin = "{file_user}"\npassword = "{FILE_PASSWORD}"\n'
    )


def reply(cluster: Cluster, login: str, password: str) -> str:
    """The final reply to USER/PASS: 230, 530 or 421."""
    ftp = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(cluster.host, cluster.port)
        answer = ftp.login(login, password)
        ftp.quit()
    except (ftplib.error_perm, ftplib.error_temp) as exc:
        answer = str(exc)
    finally:
        ftp.close()
    return answer[:3]


def replies(cluster: Cluster, login: str, password: str) -> set[str]:
    return {reply(cluster, login, password) for _ in range(ROUNDS)}


def settles(cluster: Cluster, login: str, password: str, expected: str) -> None:
    """Every one of ROUNDS logins gets ``expected``, within PROPAGATION seconds."""
    try:
        wait_for(lambda: replies(cluster, login, password) == {expected}, PROPAGATION, 0.1)
    except AssertionError:
        raise AssertionError(
            f"{login}: {replies(cluster, login, password)}, not only {expected}"
        ) from None


@pytest.fixture
def database(postgres_url: str) -> str:
    users(postgres_url, "init-db")
    return postgres_url


def test_cli_changes_reach_every_worker_within_cache_seconds(
    start_cluster: StartCluster, database: str
) -> None:
    # The file's login is in the database too: the file wins, and start-up says so.
    users(database, "add", "filed", "--password-stdin", stdin="Db-Shadowed-Pw-1\n")
    cluster = start_cluster(workers=WORKERS, config=config(database))
    assert "'filed' is defined in [[users]] and in the users database" in cluster.log()
    assert replies(cluster, "filed", FILE_PASSWORD) == {"230"}
    assert replies(cluster, "filed", "Db-Shadowed-Pw-1") == {"530"}
    assert replies(cluster, "anonymous", "guest") == {"530"}  # no default anonymous user

    assert reply(cluster, "panel1", "Panel-Pw-One-1") == "530"
    users(database, "add", "panel1", "--password-stdin", "--permission", "/:rw",
          stdin="Panel-Pw-One-1\n")  # fmt: skip
    settles(cluster, "panel1", "Panel-Pw-One-1", "230")  # no reload

    open_session = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    open_session.connect(cluster.host, cluster.port)
    open_session.login("panel1", "Panel-Pw-One-1")

    users(database, "set", "panel1", "--password-stdin", stdin="Panel-Pw-Two-2\n")
    settles(cluster, "panel1", "Panel-Pw-One-1", "530")
    assert replies(cluster, "panel1", "Panel-Pw-Two-2") == {"230"}

    users(database, "disable", "panel1")
    settles(cluster, "panel1", "Panel-Pw-Two-2", "530")
    open_session.voidcmd("NOOP")  # sessions already open may finish
    assert open_session.pwd() == "/"
    users(database, "enable", "panel1")
    settles(cluster, "panel1", "Panel-Pw-Two-2", "230")

    users(database, "delete", "panel1")
    settles(cluster, "panel1", "Panel-Pw-Two-2", "530")
    open_session.quit()
    shown = json.loads(users(database, "list", "--json"))
    assert [u["login"] for u in shown] == ["filed"]


def test_two_clusters_share_the_users_and_their_limits(
    start_cluster: StartCluster, database: str, redis_server: object, redis_namespace: str
) -> None:
    from tests.conftest import RedisServer  # noqa: PLC0415

    assert isinstance(redis_server, RedisServer)
    users(database, "add", "shared", "--password-stdin", "--max-connections", "1",
          stdin="Shared-Pw-2718\n")  # fmt: skip
    args = ["--redis-url", redis_server.url]
    first, second = (
        start_cluster(workers=2, config=config(database, namespace=redis_namespace), args=args)
        for _ in range(2)
    )
    for cluster in (first, second):
        assert reply(cluster, "shared", "Shared-Pw-2718") == "230"
    held = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    held.connect(first.host, first.port)
    held.login("shared", "Shared-Pw-2718")
    try:
        # One connection allowed cluster-wide: the other cluster refuses the second.
        assert reply(second, "shared", "Shared-Pw-2718") == "530"
    finally:
        held.quit()
    wait_for(lambda: reply(second, "shared", "Shared-Pw-2718") == "230", PROPAGATION, 0.1)
    users(database, "set", "shared", "--password-stdin", stdin="Shared-Pw-New-1\n")
    for cluster in (first, second):
        settles(cluster, "shared", "Shared-Pw-New-1", "230")


def test_bad_rows_refuse_their_login_only_and_are_logged_once(
    start_cluster: StartCluster, database: str
) -> None:
    users(database, "add", "good", "--password-stdin", stdin="Good-Pw-1618\n")
    users(database, "add", "badperm", "--password-stdin", stdin="Bad-Pw-1414\n")
    users(database, "add", "badlimit", "--password-stdin", stdin="Bad-Pw-1732\n")
    import asyncio  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415

    async def spoil() -> None:
        connection = await asyncpg.connect(database)
        try:
            await connection.execute(
                "UPDATE ftp_users SET permissions = '{\"path\": \"/\"}' WHERE login = 'badperm'"
            )
            await connection.execute(
                "UPDATE ftp_users SET maximum_connections = -2 WHERE login = 'badlimit'"
            )
        finally:
            await connection.close()

    asyncio.run(spoil())
    cluster = start_cluster(workers=WORKERS, config=config(database))
    for _ in range(2):
        assert replies(cluster, "badperm", "Bad-Pw-1414") == {"530"}
        assert replies(cluster, "badlimit", "Bad-Pw-1732") == {"530"}
        assert replies(cluster, "good", "Good-Pw-1618") == {"230"}
    log = cluster.log()
    for login, problem in (("badperm", "permissions: must be a list"),
                           ("badlimit", "maximum_connections: must be at least 0")):  # fmt: skip
        lines = [line for line in log.splitlines() if f"user {login!r} refused" in line]
        assert lines and all(problem in line for line in lines), lines
        assert len(lines) <= WORKERS, lines  # once per worker at most, not per login
    shown = users(database, "show", "badperm")
    assert "problem: permissions: must be a list" in shown


def test_database_stopped_and_started_during_a_login_loop(
    start_cluster: StartCluster, postgres_factory: Callable[[], PostgresServer]
) -> None:
    server = postgres_factory()
    url = server.url
    users(url, "init-db")
    users(url, "add", "warm", "--password-stdin", stdin="Warm-Pw-5772\n")
    users(url, "add", "cold", "--password-stdin", stdin="Cold-Pw-6931\n")
    cluster = start_cluster(workers=2, config=config(url))
    settles(cluster, "warm", "Warm-Pw-5772", "230")  # now cached by every worker
    session = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    session.connect(cluster.host, cluster.port)
    session.login("warm", "Warm-Pw-5772")

    server.stop()
    seen: set[str] = set()
    for _ in range(3):
        assert replies(cluster, "filed", FILE_PASSWORD) == {"230"}  # the file is unaffected
        assert replies(cluster, "warm", "Warm-Pw-5772") == {"230"}  # held while it is down
        seen |= replies(cluster, "cold", "Cold-Pw-6931")
    assert seen == {"421"}, seen  # temporary: try again later
    session.voidcmd("NOOP")  # open sessions are unaffected

    server.start()
    settles(cluster, "cold", "Cold-Pw-6931", "230")  # recovered by itself
    assert replies(cluster, "cold", "wrong-password") == {"530"}
    session.quit()
    log = cluster.log()
    assert 1 <= log.count("unreachable") <= 2, log[-3000:]  # once per worker and outage
    assert log.count("reachable again") <= 2
    assert all(process.is_running() for process in cluster.children())


def reference_hashes(password: str) -> dict[str, str]:
    """The same password hashed by the reference tools, one per supported format."""
    import subprocess  # noqa: PLC0415

    import argon2  # noqa: PLC0415
    import bcrypt  # noqa: PLC0415

    from ftp_cluster.shared.passwords import hash_password  # noqa: PLC0415

    def openssl(flag: str) -> str:
        done = subprocess.run(
            ["openssl", "passwd", flag, "-stdin"], input=password, capture_output=True,
            text=True, check=True, timeout=10,
        )  # fmt: skip
        return done.stdout.strip()

    return {
        "sha512": openssl("-6"),
        "sha256": openssl("-5"),
        "argon2id": argon2.PasswordHasher(time_cost=1, memory_cost=8192).hash(password),
        "bcrypt2b": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
        "bcrypt2y": "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()[4:],
        "scrypt": hash_password(password, log2_n=4),
    }


def test_every_hash_format_from_the_database_logs_in(
    start_cluster: StartCluster, database: str
) -> None:
    password = "Hash-Format-Pw-8080"
    hashes = reference_hashes(password)
    for scheme, encoded in hashes.items():
        users(database, "add", f"h{scheme}", "--password-hash", encoded)
    cluster = start_cluster(workers=2, config=config(database))
    for scheme in hashes:
        assert reply(cluster, f"h{scheme}", password) == "230", scheme
        assert reply(cluster, f"h{scheme}", password + "x") == "530", scheme
    log = cluster.log()
    assert not any(encoded in log for encoded in hashes.values())
