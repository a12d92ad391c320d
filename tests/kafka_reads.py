"""Helpers for the Kafka source tests: numbered events into a topic, reads until n records,
and the watchdog and group-join checks that both sources must pass.

Shared by :mod:`test_kafka_source` (kafka-python) and :mod:`test_kafka_rdsource`
(librdkafka), which hold both sources to one contract.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer

__all__ = ["check_join_reported", "check_watchdog", "produce", "read_n"]


def produce(bootstrap: str, topic: str, n: int, partitions: int = 1, start: int = 0) -> None:
    """Send events ``e{start}`` .. ``e{start + n - 1}`` (JSON, keyed by id) round-robin.

    Event ``i`` goes to partition ``i % partitions`` with value
    ``{"id": "e{i}", "features": {"x": i}}``; returns once all are flushed.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for i in range(start, start + n):
        value = json.dumps({"id": f"e{i}", "features": {"x": i}}).encode()
        producer.send(topic, value=value, key=f"e{i}".encode(), partition=i % partitions)
    producer.flush()
    producer.close()


def read_n(
    source: Any, n: int, timeout_s: float = 15.0, sizes: list[int] | None = None
) -> list[Any]:
    """Records from ``source.read`` until ``n`` came or ``timeout_s`` passed (maybe fewer).

    Each read asks for the records still missing and waits up to 0.2 s; ``sizes``, if
    given, gets the length of each read.
    """
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        chunk = source.read(n - len(out), 0.2)
        out.extend(chunk)
        if sizes is not None:
            sizes.append(len(chunk))
    return out


def check_watchdog(source: Any, stop_broker: Callable[[], None]) -> None:
    """``source`` (5 records waiting, on a broker of its own) stays healthy while it fetches
    idly for 2 s, and reports "no kafka fetch" within 10 s of ``stop_broker()``; closes it.
    """
    assert len(read_n(source, 5)) == 5
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # idle but fetching: stays healthy
        source.read(10, 0.2)
        assert source.health() == (True, "")
    stop_broker()
    deadline = time.monotonic() + 10.0
    while source.health()[0] and time.monotonic() < deadline:
        source.read(10, 0.2)
    healthy, reason = source.health()
    assert not healthy and "no kafka fetch" in reason, reason
    source.close()


def check_join_reported(source: Any, group: str, session_timeout_ms: int, topic: str) -> None:
    """While ``source`` joins ``group`` it is not ready, and says why (the group and the
    session timeout); once it holds ``topic``'s one partition it is healthy.
    """
    source.read(10, 0.2)
    healthy, reason = source.health()
    assert not healthy
    assert "no partitions assigned" in reason and group in reason, reason
    assert f"session_timeout_ms={session_timeout_ms}" in reason
    deadline = time.monotonic() + 15
    while not source.assignment() and time.monotonic() < deadline:  # joins in the end
        source.read(10, 0.2)
    assert source.assignment() == [f"{topic}:0"]
    assert source.health() == (True, "")
