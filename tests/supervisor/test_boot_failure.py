"""Workers that cannot boot stop the supervisor instead of crash-looping.

The arbiter runs in a child process with a worker program that is the real
:func:`run_worker` handed an unusable (closed) listening socket, so the real
boot path fails the real way: an exception before accepting, exit status 3.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import dataclasses, logging, socket, sys
from pathlib import Path
from ftp_cluster.shared.settings import ClusterConfig, ServerSettings
from ftp_cluster.supervisor.arbiter import Arbiter
from ftp_cluster.supervisor.worker_process import run_worker

def with_a_closed_socket(spec):
    dead = socket.socket()
    dead.close()
    run_worker(dataclasses.replace(spec, sock=dead))

logging.basicConfig(level="INFO")
config = ClusterConfig(server=ServerSettings(port=0, workers=1, root=Path(sys.argv[1])))
sys.exit(Arbiter(config, worker_main=with_a_closed_socket).run())
"""


def test_boot_error_on_first_boot_stops_the_supervisor(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "could not boot (exit status 3: failed to boot): stopping" in done.stderr
    assert done.stderr.count("started for slot 0") == 1  # not restarted
    assert "listening on" not in done.stdout
    assert time.monotonic() - started < 10
