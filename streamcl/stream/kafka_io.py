"""Wiring of the Kafka pieces into a service: dead letters, predictions, delayed labels, metrics.

Kept apart from :mod:`streamcl.service` so the composition root stays short; only called
when ``source.kind`` is ``"kafka"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from streamcl.connectors.base import Record
from streamcl.connectors.kafka import KafkaSource
from streamcl.connectors.kafka_rdsource import RdKafkaSource
from streamcl.connectors.kafka_sinks import KafkaDeadLetterSink, KafkaPredictionSink
from streamcl.events import Event
from streamcl.learning.learner import Prediction
from streamcl.stream.labels import LabelJoin, PendingLabels

if TYPE_CHECKING:
    from streamcl.service import Service

__all__ = ["Sink", "wire_kafka"]


class Sink(Protocol):
    """A producer-backed sink the service flushes before commits and closes on stop."""

    def flush(self) -> None:
        """Wait for what was sent."""
        ...

    def close(self) -> None:
        """Flush and release the producer."""
        ...


def wire_kafka(service: Service) -> list[Sink]:
    """Attach the dead-letter topic, predictions topic and label join to ``service``.

    Also routes the Kafka source's lag and record counts into the service's metrics and
    makes its offset commits wait for the sinks (a committed offset never covers a dead
    letter or prediction still in a producer buffer).

    Returns
    -------
    list[Sink]
        The sinks created, to be closed after the source on shutdown.
    """
    settings, metrics, loop = service.settings, service.metrics, service.loop
    k = settings.kafka
    sinks: list[Sink] = []
    if k.dead_letter_topic:
        dlq = KafkaDeadLetterSink.from_settings(
            settings, on_error=lambda _: metrics.produce_failures.labels("dead_letter").inc()
        )
        loop.dead_letters = dlq
        sinks.append(dlq)
    if k.predictions_topic:
        out = KafkaPredictionSink.from_settings(
            settings, on_error=lambda _: metrics.produce_failures.labels("predictions").inc()
        )

        def publish(
            records: Sequence[Record], events: Sequence[Event], predictions: Sequence[Prediction]
        ) -> None:
            out.send(
                [e.id for e in events],
                [p.label for p in predictions],
                [p.probabilities for p in predictions],
                loop.predicted_version,
            )

        loop.on_predictions = publish
        sinks.append(out)
    if k.labels_topic:
        ledger = getattr(loop, "ledger", None)
        loop.labels = LabelJoin(
            PendingLabels(settings.labels.pending_max, settings.labels.pending_ttl_s),
            k.labels_topic,
            loop.learner,
            loop.score,
            metrics,
            batch_size=settings.learner.batch_size,
            max_payload_bytes=settings.events.max_payload_bytes,
            on_learned=None if ledger is None else ledger.add_many,
        )
    source = service.source
    if isinstance(source, KafkaSource | RdKafkaSource):
        source.on_lag = lambda t, p, lag: metrics.consumer_lag.labels(t, str(p)).set(lag)
        source.on_records = lambda t, n: metrics.records_consumed.labels(t).inc(n)

        def flush_sinks() -> None:
            for sink in sinks:
                sink.flush()

        source.before_commit = flush_sinks
    return sinks
