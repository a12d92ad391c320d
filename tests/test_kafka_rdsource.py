"""The librdkafka source (``kafka.consumer_client: confluent-kafka``) against tansu.

The service's Kafka behaviours of :mod:`test_kafka` run again with this source (events
consumed once and learned, dead letters, delayed labels, two members sharing a group), plus
the source's own contract (positions, seek, commit, lag, records as KafkaSource builds
them) and a restart from a checkpoint that the group's commits have run past.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import test_kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka_broker import TansuBroker
from kafka_reads import check_join_reported, check_watchdog, produce, read_n
from streamcl.connectors.kafka import KafkaSource
from streamcl.connectors.kafka_rdsource import RdKafkaSource

from streamcl.produce import load_events, produce_events
from streamcl.service import Service
from streamcl.settings import load_settings
from streamcl.stream.dedup import ids_digest

pytestmark = pytest.mark.kafka

FAST = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 100}


def rd_config(broker: TansuBroker, group: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        **FAST,
        **extra,
    }


def test_group_reads_all_then_resumes_at_commit_and_lag_reaches_0(kafka_broker, new_topic):
    topic = new_topic("rdsrc", partitions=2)
    produce(kafka_broker.bootstrap, topic, 400, partitions=2)
    cfg = rd_config(kafka_broker, f"g-{topic}")
    source = RdKafkaSource([topic], cfg, max_poll_records=64)
    assert source._consumer is None and source.health()[0] is False  # lazy
    sizes: list[int] = []
    records = read_n(source, 300, sizes=sizes)
    assert len(records) == 300 and max(sizes) == 64, "max_poll_records caps each read"
    assert len({(r.partition, r.offset) for r in records}) == 300
    pos = source.position()
    assert set(pos) == {f"{topic}:0", f"{topic}:1"} and sum(pos.values()) == 300
    assert source.health() == (True, "") and source.lease_valid()
    source.close()  # commits what was read
    again = RdKafkaSource([topic], cfg)
    rest = read_n(again, 100)
    assert len(rest) == 100
    assert len(again.read(100, 0.5)) == 0, "nothing read twice"
    seen = {(r.partition, r.offset) for r in records}
    assert not seen & {(r.partition, r.offset) for r in rest}, "resumed exactly at the commit"
    assert again.position() == {f"{topic}:0": 200, f"{topic}:1": 200}
    assert again.lag() == {f"{topic}:0": 0, f"{topic}:1": 0}
    again.close()
    check = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=f"g-{topic}")
    assert [check.committed(TopicPartition(topic, p)) for p in (0, 1)] == [200, 200]
    check.close()


def test_records_match_kafka_source_and_seek_is_exact(kafka_broker, new_topic):
    topic = new_topic("rdseek")
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i in range(30):
        headers = [("trace", b"t%d" % i), ("empty", b"")]
        producer.send(
            topic, b"" if i == 7 else b"v%d" % i, key=None if i % 2 else b"k", headers=headers
        )
    producer.flush()
    producer.close()
    mine = RdKafkaSource([topic], rd_config(kafka_broker, None))
    mine.seek({f"{topic}:0": 5})  # before connecting: applied on assignment
    theirs = KafkaSource(
        [topic],
        {"bootstrap_servers": kafka_broker.bootstrap, "group_id": None, "fetch_max_wait_ms": 100},
    )
    theirs.seek({f"{topic}:0": 5})
    a, b = read_n(mine, 25), read_n(theirs, 25)
    assert [r.offset for r in a] == list(range(5, 30))
    assert a == b, "same fields, bytes, headers and timestamp units as KafkaSource"
    assert a[2].value == b"" and a[0].key is None and a[1].key == b"k"
    assert abs(a[0].timestamp - time.time()) < 60
    assert mine.position() == {f"{topic}:0": 30}
    mine.seek({f"{topic}:0": 3})
    assert [r.offset for r in read_n(mine, 2)] == [3, 4]
    assert mine.position() == {f"{topic}:0": 5}
    assert mine.commit(mine.position()) is None  # without a group: a no-op
    for source in (mine, theirs):
        source.close()
        source.close()  # idempotent


def test_watchdog_marks_unhealthy_when_broker_goes():
    broker = TansuBroker().start()
    try:
        topic = broker.create_topic("rdwd")
        produce(broker.bootstrap, topic, 5)
        source = RdKafkaSource([topic], rd_config(broker, None), watchdog_s=1.0)

        def kill() -> None:  # tansu's SIGTERM waits 5 s for connected clients
            assert broker.proc is not None
            broker.proc.kill()
            broker.proc.wait(5)

        check_watchdog(source, kill)
    finally:
        broker.stop()


def test_readiness_names_the_group_join_then_holds_partitions(kafka_broker, new_topic):
    topic = new_topic("rdjoin")
    source = RdKafkaSource(
        [topic], rd_config(kafka_broker, f"g-{topic}", **{"session.timeout.ms": 6000})
    )
    try:
        check_join_reported(source, f"g-{topic}", 6000, topic)
    finally:
        source.close()


@pytest.fixture
def confluent(monkeypatch: pytest.MonkeyPatch) -> list[Service]:
    """Make :func:`test_kafka.make_service` build services on the librdkafka source."""
    built: list[Service] = []
    make = test_kafka.make_service

    def make_rd(broker: Any, topic: str, group: str, **kafka: Any) -> Service:
        service = make(broker, topic, group, consumer_client="confluent-kafka", **kafka)
        built.append(service)
        return service

    monkeypatch.setattr(test_kafka, "make_service", make_rd)
    return built


def _all_rd(built: list[Service]) -> None:
    assert built and all(isinstance(s.source, RdKafkaSource) for s in built)


def test_elec2_consumed_predicted_and_learned_once(kafka_broker, new_topic, confluent):
    test_kafka.test_elec2_consumed_predicted_and_learned_once(kafka_broker, new_topic)
    _all_rd(confluent)


def test_garbage_goes_to_dead_letter_topic_with_reasons(kafka_broker, new_topic, confluent):
    test_kafka.test_garbage_goes_to_dead_letter_topic_with_reasons(kafka_broker, new_topic)
    _all_rd(confluent)


def test_delayed_labels_join_and_are_learned(kafka_broker, new_topic, confluent):
    test_kafka.test_delayed_labels_join_and_are_learned(kafka_broker, new_topic)
    _all_rd(confluent)


def test_two_instances_split_partitions_and_take_over(kafka_broker, new_topic, confluent):
    test_kafka.test_two_instances_split_partitions_and_take_over(kafka_broker, new_topic)
    _all_rd(confluent)


def _checkpointed(broker: Any, topic: str, folder: Path) -> Service:
    settings = load_settings(
        None,
        source={"kind": "kafka", "target": "class"},
        learner={"batch_size": 32},
        checkpoint={"dir": str(folder), "every_events": 10**9, "every_seconds": 10**6},
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "topic": topic,
            "group_id": f"g-{topic}",
            "consumer_client": "confluent-kafka",
            "session_timeout_ms": 2000,
            "heartbeat_interval_ms": 500,
            "fetch_max_wait_ms": 100,
        },
    )
    return Service(settings)


def _step_until(service: Service, done: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"handled {service.loop.events_handled}"
        service.loop.step(timeout_s=0.1)


def test_restart_resumes_at_the_checkpoint_not_at_later_commits(kafka_broker, new_topic, tmp_path):
    topic = new_topic("rdckpt", partitions=2)
    events = list(load_events("builtin://elec2", id_prefix="c", limit=2000))
    produce_events(events, topic, kafka_broker.bootstrap)
    first = _checkpointed(kafka_broker, topic, tmp_path)
    assert isinstance(first.source, RdKafkaSource)
    _step_until(first, lambda: first.loop.events_handled >= 700)
    info = first.checkpoints.checkpoint("test")
    assert info is not None
    saved = first.source.position()
    _step_until(first, lambda: first.loop.events_handled >= 1300)
    first.source.commit(first.source.position())  # the group's offsets run past the checkpoint
    first.source.disconnect()  # a crash: nothing more is checkpointed or committed
    second = _checkpointed(kafka_broker, topic, tmp_path)
    assert second.checkpoints.restored["position"] == saved
    ledger = second.loop.ledger
    assert ledger.count == sum(saved.values()), "the checkpoint holds what it learned"
    _step_until(second, lambda: ledger.count >= 2000)
    lags = lambda: [  # noqa: E731
        test_kafka.sample(second, "streamcl_consumer_lag", topic=topic, partition=p) for p in "01"
    ]
    _step_until(second, lambda: lags() == [0, 0], timeout_s=5)
    assert ledger.count == 2000 and ledger.digest == ids_digest(e["id"] for e in events)
    second.stop()
    json.dumps(second.source.position())  # a JSON-able position
