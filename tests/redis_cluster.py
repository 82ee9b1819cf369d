"""A private Redis Cluster for tests: real redis-server nodes on free loopback ports.

Three masters, each with one replica (so a killed master's slots fail over),
made by ``redis-cli --cluster create`` in a temporary directory. Nodes time
out after ``NODE_TIMEOUT_MS``, so a failover takes one or two seconds.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.cluster
import trustme

__all__ = ["NODE_TIMEOUT_MS", "ClusterNode", "LocalCluster", "Secrets", "redis_cli_executable"]

NODE_TIMEOUT_MS = 1000
_STARTUP_TIMEOUT = 20.0


def redis_cli_executable() -> str:
    executable = shutil.which("redis-cli")
    if executable is None:
        pytest.fail("redis-cli not found: install it with `apt-get install redis-tools`")
    return executable


@dataclass(frozen=True)
class Secrets:
    """TLS files (CA, certificate, key) and a password every node asks for."""

    ca: Path
    certificate: Path
    key: Path
    password: str

    @classmethod
    def make(cls, directory: Path, password: str) -> Secrets:
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        secrets = cls(directory / "ca.pem", directory / "cert.pem", directory / "key.pem", password)
        ca.cert_pem.write_to_path(secrets.ca)
        issued.cert_chain_pems[0].write_to_path(secrets.certificate)
        issued.private_key_pem.write_to_path(secrets.key)
        return secrets

    def server_options(self) -> list[str]:
        return [
            "--tls-cluster", "yes",
            "--tls-replication", "yes",
            "--tls-cert-file", str(self.certificate),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
            "--requirepass", self.password,
            "--masterauth", self.password,
        ]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca), "password": self.password}


@dataclass
class ClusterNode:
    """One redis-server of the cluster."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    client_options: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, socket_timeout=2, socket_connect_timeout=2, **self.client_options
        )

    def role(self) -> str:
        client = self.client()
        try:
            return str(client.info("replication")["role"])
        finally:
            client.close()

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _cluster_ports(count: int) -> list[int]:
    """Ports free on loopback whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    # Below the ephemeral range (32768 and up) with their bus ports, so no
    # client socket of the session takes one meanwhile.
    candidate = random.randrange(10000, 19000)
    for _ in range(2000):
        candidate += 1
        if _free(candidate) and _free(candidate + 10000):
            ports.append(candidate)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for a Redis Cluster")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, on loopback, without persistence."""

    def __init__(
        self,
        server: str,
        directory: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        secrets: Secrets | None = None,
    ) -> None:
        self.server = server
        self.directory = directory
        self.replicas = replicas
        self.secrets = secrets
        self._client_options = secrets.client_options() if secrets else {}
        count = masters * (1 + replicas)
        ports = _cluster_ports(count)
        self.nodes = [
            ClusterNode(port, directory / f"node{n}", client_options=self._client_options)
            for n, port in enumerate(ports)
        ]

    def url(self) -> str:
        """``redis+cluster://`` (``rediss+cluster://`` with the password and CA for ``secrets``)."""
        # Two seeds: the client finds the others through CLUSTER SLOTS.
        seeds = f"127.0.0.1:{self.nodes[0].port},127.0.0.1:{self.nodes[1].port}"
        if self.secrets is None:
            return f"redis+cluster://{seeds}"
        password = quote(self.secrets.password, safe="")
        return f"rediss+cluster://:{password}@{seeds}/?ssl_ca_certs={self.secrets.ca}"

    def start(self) -> None:
        for node in self.nodes:
            self._start_node(node)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = [redis_cli_executable(), "--cluster", "create", *addresses]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        if self.secrets is not None:
            create += ["--tls", "--cacert", str(self.secrets.ca)]
            create += ["-a", self.secrets.password, "--no-auth-warning"]
        done = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout.decode()}")
        self.wait_ok()

    def _start_node(self, node: ClusterNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        if self.secrets is None:
            ports = ["--port", str(node.port)]
        else:
            ports = ["--port", "0", "--tls-port", str(node.port), *self.secrets.server_options()]
        command = [
            self.server,
            "--bind", "127.0.0.1",
            *ports,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node.directory / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # A replica takes over however long it was cut off from its master.
            "--cluster-replica-validity-factor", "0",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(node.directory),
            "--logfile", str(node.directory / "redis.log"),
        ]  # fmt: skip
        node.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"cluster node on port {node.port} exited at startup")
            client = node.client()
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.02)
            finally:
                client.close()
        raise RuntimeError(f"cluster node on port {node.port} did not answer PING")

    def wait_ok(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        """Wait until every running node sees the cluster as ok, with every slot served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ok(node) for node in self.nodes if node.running):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the Redis Cluster did not become ok within {timeout} s")

    @staticmethod
    def _ok(node: ClusterNode) -> bool:
        client = node.client()
        try:
            info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()
        if isinstance(info, bytes):
            info = info.decode()
        if isinstance(info, str):
            info = dict(line.split(":", 1) for line in info.split() if ":" in line)
        return str(info.get("cluster_state")) == "ok" and int(info["cluster_slots_ok"]) == 16384

    def client(self) -> redis.cluster.RedisCluster:
        """A blocking cluster client for inspecting the cluster in tests."""
        return redis.cluster.RedisCluster(
            startup_nodes=[
                redis.cluster.ClusterNode("127.0.0.1", n.port)  # type: ignore[no-untyped-call]
                for n in self.nodes
            ],
            socket_timeout=2,
            socket_connect_timeout=2,
            **self._client_options,
        )

    def master_of(self, key: str) -> ClusterNode:
        """The node that serves ``key``'s slot now."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
            port = node.port
        finally:
            client.close()
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
