"""Announcements of promoted versions on a compacted Kafka topic.

The learner produces one record per promotion, keyed by the model name, whose value is the
JSON pointer entry (``version``, ``uri``, ``sha256``, ``created``, ``offsets``, ``metrics``).
A compacted topic keeps at least the newest record per model, so a replica that starts
reads it from the beginning and knows the newest version at once. Brokers that do not
compact (tansu) keep every record: the follower reads them all and keeps the highest
version, so the result is the same either way.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamcl.connectors.kafka_config import client_config, producer_config

if TYPE_CHECKING:
    from streamcl.settings import KafkaSettings

__all__ = ["AnnouncementFollower", "Announcer", "ensure_topic"]

log = logging.getLogger(__name__)


def ensure_topic(kafka: KafkaSettings, topic: str) -> None:
    """Create ``topic`` compacted (one partition) if it does not exist; failures are logged."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(**client_config(kafka))
    except Exception as exc:
        log.warning("cannot reach Kafka to create the announcements topic %s: %s", topic, exc)
        return
    try:
        config = {"cleanup.policy": "compact"}
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
    except TopicAlreadyExistsError:
        pass
    except Exception as exc:
        log.warning("creating the announcements topic %s failed: %s", topic, exc)
    finally:
        admin.close()


class Announcer:
    """Produces announcements (lazily connected; a failure is logged, never raised).

    Parameters
    ----------
    kafka
        Connection settings.
    topic
        The announcements topic.
    model
        Model name, the record key.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, model: str) -> None:
        self.kafka, self.topic, self.model = kafka, topic, model
        self._producer: Any = None

    def announce(self, entry: dict[str, Any]) -> bool:
        """Send ``entry`` and wait for the broker's ack (at most a few seconds)."""
        try:
            if self._producer is None:
                from kafka import KafkaProducer

                ensure_topic(self.kafka, self.topic)
                self._producer = KafkaProducer(**producer_config(self.kafka))
            value = json.dumps(entry, separators=(",", ":"), default=str).encode()
            self._producer.send(self.topic, key=self.model.encode(), value=value).get(5)
            return True
        except Exception as exc:
            log.warning("announcing version %s failed: %s", entry.get("version"), exc)
            return False

    def close(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            self._producer.close(5)


class AnnouncementFollower:
    """Follows the announcements topic on a daemon thread and reports the newest version.

    Parameters
    ----------
    kafka
        Connection settings.
    topic
        The announcements topic.
    model
        Only records keyed by this name are read.
    on_version
        Called (on the follower's thread) with each entry whose version is above every
        one seen before.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        model: str,
        on_version: Callable[[dict[str, Any]], None],
    ) -> None:
        self.kafka, self.topic, self.model = kafka, topic, model
        self.on_version = on_version
        self.newest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="announcements", daemon=True)

    def start(self) -> AnnouncementFollower:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (within about a second)."""
        self._stop.set()
        self._thread.join(5)

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            **client_config(self.kafka), enable_auto_commit=False, fetch_max_wait_ms=200
        )
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            consumer.close()
            return None
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return consumer

    def _run(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                    if consumer is None:  # the topic does not exist yet
                        self._stop.wait(1.0)
                        continue
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._handle(record.key, record.value)
            except Exception as exc:  # keep following; the store poll is the fallback
                log.warning("announcements: %s; retrying", exc)
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()

    def _handle(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or key.decode(errors="replace") != self.model or not value:
            return
        try:
            entry = json.loads(value)
            version = int(entry["version"])
        except (ValueError, KeyError, TypeError):
            log.warning("announcements: ignoring an undecodable record")
            return
        if version > self.newest:
            self.newest = version
            self.on_version(entry)
