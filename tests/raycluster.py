"""A real Ray head on 127.0.0.1 for the cluster tests and bench/scale.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_head(num_cpus: int, log_path: Path) -> Iterator[str]:
    """Start a Ray head with `num_cpus` CPU slots; yield its address; stop it.

    `ray start --block` stays in the foreground and takes the cluster's processes down with
    it when terminated, so nothing is left behind (`ray stop` would stop every Ray cluster on
    the machine). Token authentication is off, here and for drivers of this process, as on a
    private test network.
    """
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    port = _free_port()
    with log_path.open("w") as log:
        head = subprocess.Popen(
            [
                # This interpreter, so the workers it starts import this checkout's vidstyle.
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--block",
                f"--port={port}",
                f"--num-cpus={num_cpus}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not start (see {log_path})")
                time.sleep(0.5)
            yield f"127.0.0.1:{port}"
        finally:
            with contextlib.suppress(Exception):
                import ray

                ray.shutdown()  # a driver in this process
            head.terminate()
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
            if saved is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = saved
