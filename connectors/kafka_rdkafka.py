"""librdkafka options from settings, and a producer (confluent-kafka) for the hot output path.

kafka-python spends about 20 microseconds of the calling thread per ``send`` (partitioner,
accumulator, future), as much as the learner's step per event; confluent-kafka's
``produce`` hands the record to librdkafka's own threads in about 1 microsecond
(``benchmarks/kafka_throughput.py`` prints both). :class:`RdKafkaProducer` has the interface
of the kafka-python producer wrapper in :mod:`streamcl.connectors.kafka_sinks` (lazy, never
raises, errors counted and passed to ``on_error``), so a sink can use either; the setting
``kafka.producer_client`` chooses.

Nothing here connects in ``__init__``: the producer is built on the first send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamcl.settings import KafkaSettings

__all__ = [
    "RdKafkaProducer",
    "rdkafka_client_config",
    "rdkafka_config",
    "rdkafka_consumer_config",
]

log = logging.getLogger(__name__)


def rdkafka_client_config(k: KafkaSettings) -> dict[str, Any]:
    """Librdkafka connection and security options shared by the producer and the consumer.

    The same choices as :func:`~streamcl.connectors.kafka_config.client_config`, in
    librdkafka's names.
    """
    cfg: dict[str, Any] = {
        "bootstrap.servers": ",".join(s.strip() for s in k.bootstrap_servers.split(",")),
        "client.id": k.client_id,
        "security.protocol": k.security_protocol,
        "metadata.max.age.ms": k.metadata_max_age_ms,
        "reconnect.backoff.max.ms": 1_000,
    }
    if k.sasl_mechanism is not None:
        cfg["sasl.mechanism"] = k.sasl_mechanism
    if k.sasl_username is not None:
        cfg["sasl.username"] = k.sasl_username
    if k.sasl_password is not None:
        cfg["sasl.password"] = k.sasl_password.get_secret_value()
    for ours, theirs in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        if getattr(k, ours) is not None:
            cfg[theirs] = getattr(k, ours)
    return cfg


def rdkafka_config(k: KafkaSettings) -> dict[str, Any]:
    """Librdkafka producer options from settings (the same choices as kafka-python's).

    acks=all, ``producer_linger_ms``, 64 KiB batches, ``producer_max_request_size``;
    connection and security as :func:`rdkafka_client_config`.
    """
    return {
        **rdkafka_client_config(k),
        "request.timeout.ms": k.request_timeout_ms,
        "acks": "all",
        "linger.ms": k.producer_linger_ms,
        "batch.size": 65_536,
        "message.max.bytes": k.producer_max_request_size,
    }


def rdkafka_consumer_config(k: KafkaSettings) -> dict[str, Any]:
    """Librdkafka consumer options from settings: the choices of ``consumer_config``.

    Manual commits, no offset store, the group and session settings, ``fetch_max_wait_ms``,
    ``request_timeout_ms`` as the socket timeout, range or cooperative-sticky assignment.
    """
    return {
        **rdkafka_client_config(k),
        "group.id": k.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": k.auto_offset_reset,
        "fetch.wait.max.ms": k.fetch_max_wait_ms,
        "session.timeout.ms": k.session_timeout_ms,
        "heartbeat.interval.ms": k.heartbeat_interval_ms,
        "max.poll.interval.ms": k.max_poll_interval_ms,
        "socket.timeout.ms": max(10, k.request_timeout_ms),
        "topic.metadata.refresh.interval.ms": k.metadata_max_age_ms,
        "partition.assignment.strategy": (
            "range" if k.assignment == "range" else "cooperative-sticky"
        ),
        **({"group.instance.id": k.group_instance_id} if k.group_instance_id else {}),
    }


class RdKafkaProducer:
    """A confluent-kafka ``Producer`` built on first send; never raises.

    Parameters
    ----------
    config
        librdkafka options (:func:`rdkafka_config`); copied.
    on_error
        Called with the exception of each failed send (delivery error, full queue).

    Attributes
    ----------
    failures : int
        Sends that failed.
    """

    def __init__(
        self, config: Mapping[str, Any], on_error: Callable[[Exception], None] | None = None
    ) -> None:
        self.config = dict(config)
        self.on_error = on_error
        self.failures = 0
        self._producer: Any = None

    def producer(self) -> Any:
        """The ``confluent_kafka.Producer``, built on first use."""
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer(self.config)
        return self._producer

    def failed(self, exc: Exception) -> None:
        """Count and log a failed send, and pass it to ``on_error``."""
        self.failures += 1
        log.warning("kafka produce failed: %s", exc)
        if self.on_error is not None:
            self.on_error(exc)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed(RuntimeError(str(err)))

    def send(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Queue one record (delivery reports are served by the next sends and flushes)."""
        try:
            producer = self.producer()
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=self._delivered)
            except BufferError:  # librdkafka's queue is full: serve it once, then retry
                producer.poll(0.5)
                producer.produce(topic, value, key, headers=headers, on_delivery=self._delivered)
        except Exception as exc:  # too large, queue still full, bad config: count, never raise
            self.failed(exc)

    def poll(self) -> None:
        """Serve delivery reports without waiting (call after a batch of sends)."""
        if self._producer is not None:
            self._producer.poll(0)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every queued record is delivered or failed (at most ``timeout_s``)."""
        if self._producer is not None:
            left = self._producer.flush(timeout_s)
            if left:
                self.failed(TimeoutError(f"{left} records not delivered in {timeout_s} s"))

    def close(self) -> None:
        """Flush and drop the producer; idempotent."""
        self.flush()
        self._producer = None
