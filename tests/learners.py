"""Test helpers: ``streamcl run`` learner subprocesses on Kafka, and a background producer."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaProducer

STREAMCL = str(Path(sys.executable).parent / "streamcl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kafka_config(bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    """The test group timeouts of shared/KAFKA.md (tansu is slow to join otherwise)."""
    return {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": group,
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 500,
        "fetch_max_wait_ms": 100,
        "request_timeout_ms": 5000,
        "metadata_max_age_ms": 5000,
        "watchdog_s": 30.0,
    }


class Learner:
    """One ``streamcl run`` subprocess with the given settings sections."""

    def __init__(self, tmp: Path, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.port = free_port()
        config = {**config, "server": {"host": "127.0.0.1", "port": self.port}}
        cfg = tmp / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [STREAMCL, "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT
            )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5.0)

    def model(self) -> dict[str, Any]:
        return self.client.get("/v1/model").json()  # type: ignore[no-any-return]

    def wait_up(self, timeout_s: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, self.log.read_text()[-3000:]
            try:
                return self.model()
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{self.name} did not come up: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(30)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait(5)


class Producer(threading.Thread):
    """Sends ``(key, event)`` pairs as JSON keyed by the model key, at ``rate`` events/s."""

    def __init__(self, bootstrap: str, topic: str, pairs: list[Any], rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.pairs, self.rate = bootstrap, topic, pairs, rate
        self.sent = 0

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        started = time.monotonic()
        for key, event in self.pairs:
            producer.send(self.topic, key=key.encode(), value=json.dumps(event).encode())
            self.sent += 1
            ahead = self.sent / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
        producer.close()
