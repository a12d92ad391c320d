"""A topic deleted and recreated (larger than the checkpointed offset) in assign mode.

Its checkpointed offsets refer to a log that is gone: the new log must not be skipped up
to them. The topic id tells: the regressed-log policy applies (re-read, or refuse).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamcl.produce import load_events, produce_events
from streamcl.service import Service
from streamcl.settings import load_settings

pytestmark = pytest.mark.kafka


def _service(broker: Any, topic: str, folder: Path, policy: str) -> Service:
    settings = load_settings(
        None,
        source={"kind": "kafka"},
        learner={"batch_size": 32},
        checkpoint={"dir": str(folder), "every_events": 100_000, "on_regressed_log": policy},
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "topic": topic,
            "group_id": None,
            "fetch_max_wait_ms": 100,
            "request_timeout_ms": 5000,
            "metadata_max_age_ms": 1000,
        },
    )
    return Service(settings)


def _learn(service: Service, n: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while service.loop.events_handled < n and service.loop.hold is None:
        assert time.monotonic() < deadline, f"learned {service.loop.events_handled} of {n}"
        service.loop.step(timeout_s=0.2)
        if service.checkpoints is not None:
            service.checkpoints.before_step()


def _recreate(broker: Any, topic: str, n: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    before = admin.describe_topics([topic])[0]["topic_id"]
    admin.delete_topics([topic])
    deadline = time.monotonic() + 10.0  # the broker may still hold the name for a moment
    while True:
        try:
            admin.create_topics([NewTopic(topic, 1, 1)])
            break
        except TopicAlreadyExistsError:
            # A client's metadata request may have auto-created it again after the delete:
            # that is a recreated topic too (a new log under a new id).
            if admin.describe_topics([topic])[0]["topic_id"] != before:
                break
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            with contextlib.suppress(KafkaError):  # the delete did not take: ask again
                admin.delete_topics([topic])
    admin.close()
    produce_events(
        load_events("builtin://elec2", limit=n, id_prefix="new-"), topic, broker.bootstrap
    )


@pytest.mark.parametrize("policy", ["reset_to_earliest", "fail"])
def test_a_recreated_topic_is_not_skipped(
    kafka_broker: Any, new_topic: Any, tmp_path: Path, policy: str
) -> None:
    topic = new_topic("recreated")
    produce_events(load_events("builtin://elec2", limit=1000), topic, kafka_broker.bootstrap)
    first = _service(kafka_broker, topic, tmp_path, policy)
    _learn(first, 1000)
    first.stop()  # final checkpoint at offset 1000
    _recreate(kafka_broker, topic, 3000)
    second = _service(kafka_broker, topic, tmp_path, policy)
    try:
        assert second.checkpoints is not None and second.checkpoints.restored is not None
        if policy == "reset_to_earliest":
            _learn(second, 1000 + 3000)
            assert second.loop.events_handled == 1000 + 3000  # all of the new log, none skipped
        else:
            _learn(second, 1001, timeout_s=10)
            assert second.loop.events_handled == 1000
            assert second.loop.hold is not None and "topic recreated" in second.loop.hold
        assert second.metrics.registry.get_sample_value("streamcl_log_regressions_total") == 1
    finally:
        second.stop()
