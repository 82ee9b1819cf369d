"""Other real clients against the library server: aioftp's client, curl and lftp."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aioftp

from ftp_cluster import PathIO, Permission, Server, User
from tests.e2e.conftest import ServerFactory
from tests.programs import program


def disk_server(root: Path) -> Server:
    return Server(
        (
            User("alice", "alice-Pw-31", base_path=root, home_path="/"),
            User(base_path=root, permissions=(Permission("/", readable=True, writable=False),)),
        ),
        path_io_factory=PathIO,
    )


def test_aioftp_client_round_trip(run_server: ServerFactory, tmp_path: Path) -> None:
    running = run_server(lambda: disk_server(tmp_path))
    payload = os.urandom(300_000)
    source = tmp_path / "source.bin"
    source.write_bytes(payload)

    async def session() -> list[str]:
        async with aioftp.Client.context(
            running.host, running.port, "alice", "alice-Pw-31"
        ) as client:
            await client.make_directory("sub")
            await client.upload(source, "sub/copy.bin", write_into=True)
            await client.download("sub/copy.bin", str(tmp_path / "back.bin"), write_into=True)
            names = [str(path) for path, _ in await client.list("sub")]
            await client.rename("sub/copy.bin", "sub/moved.bin")
            return names

    names = asyncio.run(session())
    assert names == ["sub/copy.bin"]
    assert (tmp_path / "back.bin").read_bytes() == payload
    assert (tmp_path / "sub" / "moved.bin").read_bytes() == payload


def test_curl_download_upload_and_list(run_server: ServerFactory, tmp_path: Path) -> None:
    program("curl")
    running = run_server(lambda: disk_server(tmp_path))
    (tmp_path / "hello.txt").write_bytes(b"hello from ftp-cluster\n")
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", f"{running.url}/hello.txt", "-u", "alice:alice-Pw-31"],
        capture_output=True,
        check=True,
    )
    assert out.stdout == b"hello from ftp-cluster\n"
    upload = tmp_path / "local.bin"
    upload.write_bytes(os.urandom(200_000))
    subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-T",
            str(upload),
            f"{running.url}/up.bin",
            "-u",
            "alice:alice-Pw-31",
        ],
        check=True,
    )
    assert (tmp_path / "up.bin").read_bytes() == upload.read_bytes()
    listing = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "--list-only",
            f"{running.url}/",
            "-u",
            "alice:alice-Pw-31",
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    assert {"hello.txt", "up.bin", "local.bin"} <= set(listing.stdout.split())
    # Active mode (EPRT) and resuming a download with REST.
    partial = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-P",
            "-",
            "-C",
            "6",
            f"{running.url}/hello.txt",
            "-u",
            "alice:alice-Pw-31",
        ],
        capture_output=True,
        check=True,
    )
    assert partial.stdout == b"from ftp-cluster\n"


def test_lftp_mirror_both_ways(run_server: ServerFactory, tmp_path: Path) -> None:
    program("lftp")
    served = tmp_path / "served"
    served.mkdir()
    running = run_server(lambda: disk_server(served))
    local = tmp_path / "local"
    (local / "deep" / "er").mkdir(parents=True)
    for index in range(5):
        (local / "deep" / "er" / f"f{index}").write_bytes(os.urandom(10_000 * (index + 1)))
    commands = (
        "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; "
        f"open -u alice,alice-Pw-31 -p {running.port} {running.host}; "
        f"mirror -R {local} /up; mirror /up {tmp_path / 'back'}; quit"
    )
    subprocess.run(["lftp", "-c", commands], check=True, timeout=60, capture_output=True)
    for index in range(5):
        original = (local / "deep" / "er" / f"f{index}").read_bytes()
        assert (served / "up" / "deep" / "er" / f"f{index}").read_bytes() == original
        assert (tmp_path / "back" / "deep" / "er" / f"f{index}").read_bytes() == original
