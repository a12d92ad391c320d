"""An S3-compatible server for tests: ``moto_server`` (from ``moto[server]``) on loopback.

:class:`MotoServer` starts it on a free 127.0.0.1 port with a bounded readiness loop, can be
stopped and started again on the same port (an object-store outage; moto keeps its data in
memory, so a restart comes back empty), and is stopped by PID, also from ``atexit``.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["MotoServer"]

_RUNNING: set[subprocess.Popen[bytes]] = set()
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _RUNNING.discard(proc)


@atexit.register
def _stop_all() -> None:
    for proc in list(_RUNNING):
        _stop(proc)


class MotoServer:
    """moto_server on ``127.0.0.1:port``; :attr:`endpoint` is its URL."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Credentials for boto3 clients of this server (merge into ``os.environ``)."""
        return dict(CREDENTIALS)

    def start(self, timeout_s: float = 20.0) -> MotoServer:
        """Start (or restart) the server and wait until the port accepts connections."""
        binary = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _RUNNING.add(self.proc)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server did not listen on {self.port} in {timeout_s} s")

    def stop(self) -> None:
        """Stop the server (its buckets are lost)."""
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return it."""
        with contextlib.suppress(Exception):
            self.client().create_bucket(Bucket=name)
        return name
