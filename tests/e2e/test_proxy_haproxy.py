"""Real clients through a real HAProxy with ``send-proxy`` and ``send-proxy-v2``.

The topology is in tests/e2e/haproxy.py: control through a v1 or a v2
frontend, passive data through a v2 frontend on the passive port range.
Clients bind their own loopback addresses (127.0.0.6, 127.0.0.7), HAProxy
connects from 127.0.0.4, so the server sees a client only through headers.
"""

from __future__ import annotations

import ftplib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftp_cluster import MemoryPathIO, Server, User
from ftp_cluster.shared.users import Permission
from tests.e2e.cluster import config_toml
from tests.e2e.conftest import RunningServer, ServerFactory
from tests.e2e.haproxy import PROXY_HOST, PROXY_SOURCE, HAProxy, free_port_range, running_haproxy
from tests.supervisor.conftest import StartCluster

PASSWORD = "Pw-haproxied-7310"
LOGIN = "dave"
USER = User(LOGIN, PASSWORD, permissions=(Permission("/", readable=True, writable=True),))
CLIENT, OTHER_CLIENT = "127.0.0.6", "127.0.0.7"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def proxied(run_server: ServerFactory, tmp_path: Path) -> Iterator[tuple[RunningServer, HAProxy]]:
    passive = free_port_range(8)
    server = run_server(
        lambda: Server(
            [USER],
            MemoryPathIO,
            proxy_protocol=True,
            trusted_proxies=[f"{PROXY_SOURCE}/32"],
            masquerade_address=PROXY_HOST,
            data_ports=passive,
            maximum_connections_per_ip=2,
        )
    )
    with running_haproxy(tmp_path, server.port, passive) as proxy:
        yield server, proxy


def client(port: int, source: str = CLIENT) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=10, source_address=(source, 0))
    ftp.connect(PROXY_HOST, port)
    return ftp


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_ftplib_through_haproxy(proxied: tuple[RunningServer, HAProxy], version: str) -> None:
    _, proxy = proxied
    port = proxy.v1_port if version == "v1" else proxy.v2_port
    ftp = client(port)
    try:
        ftp.login(LOGIN, PASSWORD)
        ftp.storbinary("STOR f", io.BytesIO(PAYLOAD))
        out = io.BytesIO()
        ftp.retrbinary("RETR f", out.write)
        assert out.getvalue() == PAYLOAD
        assert ftp.nlst() == ["f"]
        # Bounce protection knows the client behind the proxy.
        assert ftp.sendcmd(f"EPRT |1|{CLIENT}|40001|").startswith("200")
        with pytest.raises(ftplib.error_perm):
            ftp.sendcmd(f"EPRT |1|{PROXY_SOURCE}|40001|")
    finally:
        ftp.close()


def test_per_ip_limit_counts_the_clients_behind_haproxy(
    proxied: tuple[RunningServer, HAProxy],
) -> None:
    _, proxy = proxied
    held = [client(proxy.v1_port), client(proxy.v2_port)]
    try:
        with pytest.raises(ftplib.error_temp, match="421"):
            held.append(client(proxy.v2_port))  # a third from 127.0.0.6
        other = client(proxy.v1_port, OTHER_CLIENT)
        held.append(other)
        other.login(LOGIN, PASSWORD)
    finally:
        for ftp in held:
            ftp.close()


def test_curl_upload_and_download_through_haproxy(
    proxied: tuple[RunningServer, HAProxy], tmp_path: Path
) -> None:
    _, proxy = proxied
    source = tmp_path / "up.bin"
    source.write_bytes(PAYLOAD)
    url = f"ftp://{LOGIN}:{PASSWORD}@{PROXY_HOST}:{proxy.v2_port}/c.bin"
    common = ["curl", "-sS", "--fail", "--max-time", "30", "--interface", CLIENT]
    subprocess.run([*common, "-T", str(source), url], check=True, timeout=40)
    back = tmp_path / "down.bin"
    subprocess.run([*common, "-o", str(back), url], check=True, timeout=40)
    assert back.read_bytes() == PAYLOAD


def test_a_cluster_configured_from_toml_behind_haproxy(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    passive = free_port_range(8)
    config = config_toml(
        {
            "proxy_protocol": True,
            "trusted_proxies": [f"{PROXY_SOURCE}/32"],
            "masquerade_address": PROXY_HOST,
            "passive_ports": [passive.start, passive.stop - 1],
            "maximum_connections_per_ip": 1,
        }
    )
    cluster = start_cluster(workers=2, config=config)
    (cluster.root / "hello.txt").write_bytes(b"hello through the proxy\n")
    with running_haproxy(tmp_path, cluster.port, passive) as proxy:
        ftp = client(proxy.v1_port)
        try:
            ftp.login()
            out = io.BytesIO()
            ftp.retrbinary("RETR hello.txt", out.write)
            assert out.getvalue() == b"hello through the proxy\n"
            # The cap of one per client IP counts 127.0.0.6, wherever it lands.
            with pytest.raises(ftplib.error_temp, match="421"):
                client(proxy.v2_port).close()
            other = client(proxy.v2_port, OTHER_CLIENT)
            other.login()
            other.close()
        finally:
            ftp.close()
