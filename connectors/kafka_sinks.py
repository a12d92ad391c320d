"""Kafka sinks: dead letters and predictions, each through a lazily built producer.

Sends are asynchronous and never raise: a failed send is logged, counted and passed to
``on_error``. :meth:`~_TopicSink.flush` waits for what was sent; the service has the source
flush the sinks before each offset commit (``before_commit``, see :mod:`streamcl.stream.kafka_io`),
so a committed offset never covers a record still in a producer buffer. Values and keys are
sent as bytes (no kafka-python serializers).

Nothing here connects in ``__init__``: each producer is built on its first send.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import msgspec
from kafka import KafkaProducer
from streamcl.connectors.base import Record
from streamcl.connectors.kafka_config import producer_config
from streamcl.connectors.kafka_rdkafka import RdKafkaProducer, rdkafka_config

if TYPE_CHECKING:
    from streamcl.settings import Settings

__all__ = ["KafkaDeadLetterSink", "KafkaPredictionSink"]

log = logging.getLogger(__name__)

#: Dead-letter header names (values are UTF-8 bytes).
DLQ_HEADERS = (
    "streamcl.dlq.topic",
    "streamcl.dlq.partition",
    "streamcl.dlq.offset",
    "streamcl.dlq.error.class",
    "streamcl.dlq.error.reason",
    "streamcl.dlq.error.field",
    "streamcl.dlq.error.detail",
)


class _LazyProducer:
    """A ``KafkaProducer`` built on first send; errors are logged and counted, never raised."""

    def __init__(
        self, config: Mapping[str, Any], on_error: Callable[[Exception], None] | None = None
    ) -> None:
        self.config = dict(config)
        for name in ("key_serializer", "value_serializer"):
            self.config.pop(name, None)
        self.on_error = on_error
        self._producer: KafkaProducer | None = None
        self.failures = 0

    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self.config)
        return self._producer

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        log.warning("kafka produce failed: %s", exc)
        if self.on_error is not None:
            self.on_error(exc)

    def send(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        try:
            future = self.producer().send(topic, value=value, key=key, headers=headers)
            future.add_errback(self.failed)
        except Exception as exc:  # buffer full, too large, no metadata: count, never raise
            self.failed(exc)

    def poll(self) -> None:
        """Nothing to serve: kafka-python runs callbacks on its own IO thread."""

    def flush(self, timeout_s: float = 5.0) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except Exception as exc:
                self.failed(exc)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=10)
            except Exception:
                log.exception("closing the kafka producer failed")


class _TopicSink:
    """A lazily connected producer bound to the topic named by ``kafka.<setting>``.

    Parameters
    ----------
    topic
        Topic the sink writes to.
    config
        kafka-python ``KafkaProducer`` options; copied.
    on_error
        Called with the exception of each failed send (e.g. count it in a metric).
    """

    #: The KafkaSettings field that names the topic.
    setting: ClassVar[str] = ""

    def __init__(
        self,
        topic: str,
        config: Mapping[str, Any],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.topic = topic
        self._out: _LazyProducer | RdKafkaProducer = _LazyProducer(config, on_error)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        """A sink for the topic ``settings.kafka.<setting>`` names.

        With ``kafka.producer_client: confluent-kafka`` it sends through librdkafka
        (:class:`~streamcl.connectors.kafka_rdkafka.RdKafkaProducer`).

        Raises
        ------
        ValueError
            When that topic is not set.
        """
        topic = getattr(settings.kafka, cls.setting)
        if not topic:
            raise ValueError(f"kafka.{cls.setting} is not set")
        sink = cls(topic, producer_config(settings.kafka), **kwargs)
        if settings.kafka.producer_client == "confluent-kafka":
            sink._out = RdKafkaProducer(rdkafka_config(settings.kafka), kwargs.get("on_error"))
        return sink

    def flush(self) -> None:
        """Wait until every record sent so far is acknowledged (or failed)."""
        self._out.flush()

    def close(self) -> None:
        """Flush and close the producer; idempotent."""
        self._out.flush()
        self._out.close()


class KafkaDeadLetterSink(_TopicSink):
    """Dead letters to a Kafka topic: original key, value and headers, plus why.

    Headers added (UTF-8 values): ``streamcl.dlq.topic``, ``.partition``, ``.offset``,
    ``.error.class``, ``.error.reason``, ``.error.field``, ``.error.detail`` (at most 1000
    characters). A value too large for the producer is cut to ``max_value_bytes`` and
    marked with ``streamcl.dlq.truncated``. Sends are asynchronous: a dead letter never
    blocks its partition; :meth:`flush` waits for them (before an offset commit).

    Parameters
    ----------
    topic
        Dead-letter topic.
    config
        kafka-python ``KafkaProducer`` options; copied.
    on_error
        Called with the exception of each failed send (e.g. count it in a metric).
    """

    setting = "dead_letter_topic"

    def __init__(
        self,
        topic: str,
        config: Mapping[str, Any],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        super().__init__(topic, config, on_error)
        #: Largest value sent as is, bytes: the request limit minus room for headers.
        self.max_value_bytes = int(self._out.config.get("max_request_size", 1_048_576)) - 16_384

    def send(self, record: Record, reason: str, field: str, detail: str, error: str) -> None:
        """Send ``record`` with headers naming its origin and the error; never raises."""
        value = record.value
        raw = value if isinstance(value, bytes) else json.dumps(dict(value)).encode("utf-8")
        headers = [*record.headers]
        if len(raw) > self.max_value_bytes:
            raw = raw[: self.max_value_bytes]
            headers.append(("streamcl.dlq.truncated", b"1"))
        extra = (
            record.topic,
            str(record.partition),
            str(record.offset),
            error,
            reason,
            field,
            detail[:1000],
        )
        headers += [(h, v.encode("utf-8")) for h, v in zip(DLQ_HEADERS, extra, strict=True)]
        self._out.send(self.topic, raw, record.key, headers)

    @property
    def failures(self) -> int:
        """Dead letters that could not be sent."""
        return self._out.failures


class KafkaPredictionSink(_TopicSink):
    """One record per predicted event to a topic, keyed by event id.

    The value is JSON ``{"id", "label", "probabilities", "model_version", "ts"}``:
    ``label`` the predicted class (None before any class is known), ``probabilities``
    class -> probability, ``model_version`` the learning steps of the model that predicted,
    ``ts`` the prediction time (epoch seconds).

    Parameters
    ----------
    topic
        Predictions topic.
    config
        kafka-python ``KafkaProducer`` options; copied.
    on_error
        Called with the exception of each failed send.
    """

    setting = "predictions_topic"

    def send(
        self,
        ids: Sequence[str],
        labels: Sequence[Any],
        probabilities: Sequence[Mapping[str, float]],
        model_version: int,
    ) -> None:
        """Send one prediction per id (``labels`` and ``probabilities`` aligned with ``ids``).

        The batch is serialised by msgspec (JSON, about 1 microsecond a record).
        """
        now = time.time()
        encode, send, topic = _ENCODER.encode, self._out.send, self.topic
        for event_id, label, probs in zip(ids, labels, probabilities, strict=True):
            value = encode(
                {
                    "id": event_id,
                    "label": label,
                    "probabilities": probs,
                    "model_version": model_version,
                    "ts": now,
                }
            )
            send(topic, value, event_id.encode("utf-8"), [])
        self._out.poll()


_ENCODER = msgspec.json.Encoder()
