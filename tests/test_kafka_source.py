"""KafkaSource against a real tansu broker: group consumption, positions, seek, commit, watchdog."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka_broker import TansuBroker
from kafka_reads import check_join_reported, check_watchdog, produce, read_n
from streamcl.connectors.kafka import KafkaSource

pytestmark = pytest.mark.kafka

FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500, "fetch_max_wait_ms": 100}


def config(broker: TansuBroker, group: str | None, **extra: object) -> dict[str, object]:
    return {
        "bootstrap_servers": broker.bootstrap,
        "group_id": group,
        "auto_offset_reset": "earliest",
        **FAST_GROUP,
        **extra,
    }


def test_group_source_reads_all_then_resumes_at_commit(kafka_broker, new_topic):
    topic = new_topic("src", partitions=2)
    produce(kafka_broker.bootstrap, topic, 400, partitions=2)
    cfg = config(kafka_broker, f"g-{topic}")
    source = KafkaSource([topic], cfg)
    assert source._consumer is None  # lazy: no network before the first read
    records = read_n(source, 300)
    assert len(records) == 300
    assert len({(r.partition, r.offset) for r in records}) == 300
    pos = source.position()
    assert sum(pos.values()) == 300
    assert source.health() == (True, "")
    source.close()  # commits what was read
    again = KafkaSource([topic], cfg)
    rest = read_n(again, 100)
    assert len(rest) == 100
    seen = {(r.partition, r.offset) for r in records}
    assert not seen & {(r.partition, r.offset) for r in rest}, "resumed exactly at the commit"
    assert again.position() == {f"{topic}:0": 200, f"{topic}:1": 200}
    deadline = time.monotonic() + 5.0
    while len(again.lag()) < 2 and time.monotonic() < deadline:  # a fetch of each partition
        assert again.read(10, 0.2) == []
    assert again.lag() == {f"{topic}:0": 0, f"{topic}:1": 0}
    again.close()
    check = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"g-{topic}")
    assert check.committed(TopicPartition(topic, 0)) == 200
    check.close()


def test_seek_is_exact_and_config_is_copied(kafka_broker, new_topic):
    topic = new_topic("seek")
    produce(kafka_broker.bootstrap, topic, 50)
    cfg = config(kafka_broker, None)
    source = KafkaSource([topic], cfg)
    cfg["bootstrap_servers"] = "127.0.0.1:1"  # the source keeps its own copy
    source.seek({f"{topic}:0": 20})  # before connecting: applied on assignment
    first = read_n(source, 5)
    assert [r.offset for r in first] == [20, 21, 22, 23, 24]
    assert first[0].key == b"e20" and json.loads(first[0].value)["id"] == "e20"
    assert source.position() == {f"{topic}:0": 25}
    source.seek({f"{topic}:0": 3})
    assert read_n(source, 1)[0].offset == 3
    source.close()
    source.close()  # idempotent


def test_watchdog_marks_unhealthy_when_broker_goes():
    broker = TansuBroker().start()
    try:
        topic = broker.create_topic("wd")
        produce(broker.bootstrap, topic, 5)
        source = KafkaSource([topic], config(broker, None, request_timeout_ms=2000), watchdog_s=1.0)
        assert source.health()[0] is False  # not connected yet
        check_watchdog(source, broker.stop)
    finally:
        broker.stop()


def test_readiness_names_a_group_join_that_has_not_assigned_partitions(kafka_broker, new_topic):
    topic = new_topic("join")
    # Kafka's default session timeout: tansu holds the join for half of it (about 5 s here)
    source = KafkaSource([topic], config(kafka_broker, f"g-{topic}", session_timeout_ms=10000))
    try:
        check_join_reported(source, f"g-{topic}", 10000, topic)
    finally:
        source.close()
