"""Shared fixtures: a tansu Kafka broker and a moto S3 server (one each per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_broker import TansuBroker, unique_topic
from s3_server import MotoServer


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """A running tansu broker on a free loopback port; fails (never skips) without tansu."""
    broker = TansuBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def new_topic(kafka_broker: TansuBroker):  # type: ignore[no-untyped-def]
    """Factory: ``new_topic(prefix, partitions=1)`` creates a uniquely named topic."""

    def make(prefix: str = "t", partitions: int = 1) -> str:
        return kafka_broker.create_topic(unique_topic(prefix), partitions)

    return make


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """moto_server on a free loopback port (credentials in ``MotoServer.env``)."""
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on :func:`s3_server`, with its credentials in the environment."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server.create_bucket(unique_topic("bucket").lower().replace("_", "-")[:60])
