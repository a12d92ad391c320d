"""Broker restart: tansu on S3 storage (moto_server, loopback) killed and restarted mid-stream.

The service must report not ready during the outage, recover by itself, and learn every
event exactly once (count and digest of learned ids).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka_broker import tansu_binary, unique_topic

from streamcl.stream.dedup import ids_digest

BIN = Path(sys.executable).parent
N = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not open")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def s3(tmp_path: Path):  # type: ignore[no-untyped-def]
    """moto_server on loopback with a ``tansu`` bucket; yields the broker's environment."""
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        wait_port(port, proc)
        env = {
            **os.environ,
            "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ).create_bucket(Bucket="tansu")
        yield env
    finally:
        stop(proc)
        log.close()


class Broker:
    """tansu with S3 storage on a fixed loopback port, restartable."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.port = env, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "s3://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        wait_port(self.port, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        stop(self.proc, signal.SIGKILL)


def produce(bootstrap: str, topic: str, ids: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i, event_id in enumerate(ids):
            event = {"id": event_id, "features": {"x": (i % 13) / 13.0}, "label": i % 2}
            producer.send(topic, json.dumps(event).encode())
        producer.flush(30)
    finally:
        producer.close(5)


def poll(client: httpx.Client, path: str) -> httpx.Response | None:
    try:
        return client.get(path)
    except httpx.TransportError:
        return None


def wait_until(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_broker_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, s3: dict[str, str]
) -> None:
    broker = Broker(s3, tmp_path / "tansu.log")
    broker.start()
    topic = unique_topic("restart")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5_000)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    ids = [f"r-{i:05d}" for i in range(N)]
    produce(broker.bootstrap, topic, ids[: N // 2])
    port = free_port()
    config = {
        "source": {"kind": "kafka", "target": None},
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "topic": topic,
            "group_id": None,
            "watchdog_s": 2.0,
            "request_timeout_ms": 3_000,
            "fetch_max_wait_ms": 100,
        },
        "learner": {"hidden": [8], "batch_size": 16},
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every_events": 100, "every_seconds": 1},
        "server": {"host": "127.0.0.1", "port": port},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with (tmp_path / "service.log").open("wb") as out:
        service = subprocess.Popen(
            [str(BIN / "streamcl"), "run", "--config", str(cfg)], stdout=out, stderr=out
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    try:

        def learned() -> int:
            r = poll(client, "/v1/model")
            return -1 if r is None else int(r.json()["learned_ids"])

        wait_until(lambda: learned() == N // 2, "the first half to be learned")
        wait_until(lambda: (r := poll(client, "/readyz")) is not None and r.status_code == 200,
                   "ready before the outage")  # fmt: skip
        broker.kill()
        outage = wait_until(
            lambda: (r := poll(client, "/readyz")) is not None and r.status_code == 503 and r,
            "not ready during the outage",
        )
        assert "kafka" in outage.json()["status"]
        assert service.poll() is None  # no crash
        time.sleep(2.0)  # an outage longer than the watchdog and the client timeouts
        assert poll(client, "/healthz").status_code == 200  # type: ignore[union-attr]
        broker.start()
        produce(broker.bootstrap, topic, ids[N // 2 :])
        wait_until(lambda: learned() >= N, "the second half to be learned", timeout_s=90)
        wait_until(lambda: (r := poll(client, "/readyz")) is not None and r.status_code == 200,
                   "ready again after the outage")  # fmt: skip
        time.sleep(1.0)  # nothing more may arrive
        model = client.get("/v1/model").json()
        assert model["learned_ids"] == N
        assert model["learned_digest"] == ids_digest(ids)
        assert model["events_rejected"] == 0
    finally:
        client.close()
        stop(service)
        if broker.proc is not None:
            stop(broker.proc)
    assert service.returncode in (0, -signal.SIGTERM)  # graceful: final checkpoint written
