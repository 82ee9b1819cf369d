"""FTPS on a real cluster: every worker, the implicit port, status, certificate reload."""

from __future__ import annotations

import io
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import config_toml
from tests.e2e.tls import Certificates, ResumingFTP_TLS
from tests.programs import program
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

PASSWORD = "cluster-Ftps-2718"


def ftps_cluster(start_cluster: StartCluster, certs: Certificates, workers: int = 2) -> Cluster:
    config = config_toml(
        tls={"certificate": str(certs.chain), "private_key": str(certs.key), "implicit_port": 0},
        users=[{"login": "alice", "password": PASSWORD}],
    )
    return start_cluster(workers=workers, config=config)


def login(cluster: Cluster, context: ssl.SSLContext) -> ResumingFTP_TLS:
    ftp = ResumingFTP_TLS(context=context, timeout=10)
    ftp.connect(cluster.host, cluster.port)
    ftp.auth()
    ftp.login("alice", PASSWORD)
    ftp.prot_p()
    return ftp


def serial_seen(cluster: Cluster, context: ssl.SSLContext) -> int:
    ftp = login(cluster, context)
    assert isinstance(ftp.sock, ssl.SSLSocket)
    der = ftp.sock.getpeercert(binary_form=True)
    ftp.quit()
    assert der is not None
    from cryptography import x509  # noqa: PLC0415

    return x509.load_der_x509_certificate(der).serial_number


def test_ftps_on_every_worker_and_the_implicit_port(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    certs = Certificates.make(tmp_path)
    cluster = ftps_cluster(start_cluster, certs)
    context = certs.client_context()
    sessions = [login(cluster, context) for _ in range(8)]
    for number, ftp in enumerate(sessions):
        ftp.storbinary(f"STOR f{number}", io.BytesIO(b"x" * 100_000))
    for ftp in sessions:
        assert len(ftp.nlst()) == 8
        ftp.quit()
    implicit = cluster.status()["implicit_address"]
    assert implicit is not None and implicit.startswith("ftps://")
    curl = program("curl")
    got = subprocess.run(
        [curl, "-sS", "--cacert", str(certs.ca_file), "-u", f"alice:{PASSWORD}", f"{implicit}/f0"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    assert got == b"x" * 100_000

    def counted() -> list[dict[str, int]] | None:
        workers: list[dict[str, int]] = cluster.status()["workers"]
        return workers if sum(w.get("tls_sessions", 0) for w in workers) >= 9 else None

    workers = wait_for(counted, timeout=5, interval=0.2)  # heartbeats come every second
    assert all(w["tls_sessions"] > 0 for w in workers)  # the kernel spread them


def test_reload_swaps_the_certificate_without_dropping_anything(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    certs = Certificates.make(tmp_path)
    cluster = ftps_cluster(start_cluster, certs)
    context = certs.client_context()
    first = serial_seen(cluster, context)
    kept = login(cluster, context)  # a session from before the renewal
    failures: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                ftp = login(cluster, context)
                ftp.nlst()
                ftp.quit()
            except Exception as error:  # counted, reported below
                failures.append(error)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        # Renewal, as certbot does it: new files at the same paths, same CA.
        renewed = certs.ca.issue_cert("127.0.0.1", "localhost")
        renewed.private_key_and_cert_chain_pem.write_to_path(certs.chain)
        renewed.private_key_pem.write_to_path(certs.key)
        done = cli("reload", "--pid-file", str(cluster.pid_file))
        assert done.returncode == 0, done.stderr
        wait_for(lambda: serial_seen(cluster, context) != first, timeout=30, interval=0.2)
        # A broken certificate is refused, with the reason, and the good one stays.
        certs.chain.write_text("not a certificate\n")
        broken = cli("reload", "--pid-file", str(cluster.pid_file))
        assert broken.returncode != 0 and "tls" in broken.stderr.lower(), broken.stderr
        renewed.private_key_and_cert_chain_pem.write_to_path(certs.chain)
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(30)
    assert not failures, failures[:3]
    # The old session still works, and its data connections still resume.
    kept.storbinary("STOR after", io.BytesIO(b"still here"))
    assert "after" in kept.nlst()
    kept.quit()


def test_self_signed_certificate_command_serves_ftps(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    done = cli("self-signed-certificate", "--out", str(tmp_path / "tls"), "--host", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    cert, key = tmp_path / "tls" / "certificate.pem", tmp_path / "tls" / "private-key.pem"
    assert key.stat().st_mode & 0o077 == 0
    cluster = start_cluster(
        workers=1,
        args=[
            "--tls-certificate",
            str(cert),
            "--tls-private-key",
            str(key),
            "--user",
            f"bob:{PASSWORD}",
        ],
    )
    context = ssl.create_default_context(cafile=str(cert))
    ftp = ResumingFTP_TLS(context=context, timeout=10)
    ftp.connect(cluster.host, cluster.port)
    ftp.auth()
    ftp.login("bob", PASSWORD)
    ftp.prot_p()
    ftp.storbinary("STOR f", io.BytesIO(b"self-signed"))
    assert ftp.nlst() == ["f"]
    ftp.quit()
