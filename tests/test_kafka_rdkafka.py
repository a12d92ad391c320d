"""The librdkafka (confluent-kafka) producer behind the predictions and dead-letter sinks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from streamcl.connectors.base import Record
from streamcl.connectors.kafka_rdkafka import RdKafkaProducer
from streamcl.connectors.kafka_sinks import KafkaDeadLetterSink, KafkaPredictionSink
from test_kafka import read_topic

from streamcl.settings import load_settings


def _settings(bootstrap: str, **kafka: Any) -> Any:
    return load_settings(
        None,
        kafka={"bootstrap_servers": bootstrap, "producer_client": "confluent-kafka", **kafka},
    )


@pytest.mark.kafka
def test_predictions_through_librdkafka_arrive_once_keyed_by_id(kafka_broker, new_topic):
    preds = new_topic("rd-preds")
    sink = KafkaPredictionSink.from_settings(
        _settings(kafka_broker.bootstrap, predictions_topic=preds)
    )
    assert isinstance(sink._out, RdKafkaProducer)
    ids = [f"p{i}" for i in range(300)]
    sink.send(ids, [i % 2 for i in range(300)], [{"0": 0.25, "1": 0.75}] * 300, 7)
    sink.close()
    out = read_topic(kafka_broker, preds, 300)
    values = [json.loads(m.value) for m in out]
    assert sorted(v["id"] for v in values) == sorted(ids)
    assert all(m.key.decode() == v["id"] for m, v in zip(out, values, strict=True))
    assert values[0]["probabilities"] == {"0": 0.25, "1": 0.75}
    assert {v["model_version"] for v in values} == {7}
    assert sink._out.failures == 0


@pytest.mark.kafka
def test_dead_letters_through_librdkafka_keep_value_key_and_reason(kafka_broker, new_topic):
    dlq = new_topic("rd-dlq")
    sink = KafkaDeadLetterSink.from_settings(
        _settings(kafka_broker.bootstrap, dead_letter_topic=dlq)
    )
    record = Record(b"{not json", key=b"k1", topic="events", partition=1, offset=41)
    sink.send(record, "bad_json", "", "Expecting property name", "DecodeError")
    sink.close()
    (message,) = read_topic(kafka_broker, dlq, 1)
    headers = dict(message.headers)
    assert (message.value, message.key) == (b"{not json", b"k1")
    assert headers["streamcl.dlq.error.reason"] == b"bad_json"
    assert headers["streamcl.dlq.offset"] == b"41"


def test_an_unreachable_broker_is_counted_never_raised() -> None:
    errors: list[Exception] = []
    producer = RdKafkaProducer(
        {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 300}, errors.append
    )
    producer.send("t", b"v", b"k", [])
    producer.flush(timeout_s=3.0)
    assert producer.failures == 1 and len(errors) == 1


class _Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> None:
        self.sent.append((topic, value, key))

    def poll(self) -> None:
        pass


def test_a_prediction_batch_serialises_as_one_json_object_per_event() -> None:
    sink = KafkaPredictionSink("preds", {})
    sink._out = _Capture()  # type: ignore[assignment]
    probs = [{"UP": 0.1 + 1e-17, "DOWN": 0.9}, {}]
    sink.send(["a", "é"], ["UP", None], probs, 3)
    (t1, v1, k1), (_, v2, k2) = sink._out.sent  # type: ignore[attr-defined]
    first, second = json.loads(v1), json.loads(v2)
    assert (t1, k1, k2) == ("preds", b"a", "é".encode())
    assert first["probabilities"] == probs[0] and first["label"] == "UP"
    assert second == {**second, "id": "é", "label": None, "probabilities": {}, "model_version": 3}
    assert first["ts"] == second["ts"] > 1.7e9
