"""Shared fixtures: a tansu Kafka broker (started once per session) and fresh topic names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_broker import TansuBroker, unique_topic


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
