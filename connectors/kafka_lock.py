"""A learner lock elected through Kafka: the consumer-group owner of a one-partition topic.

Every instance of a learner (``learner.standby``) joins the group ``<group_id>.lock`` on
the lock topic, which has a single partition. Kafka's group coordinator assigns that
partition to exactly one live member: that member is the active learner, the others are
hot standbys. When the active one dies, its session expires (``session_timeout_ms``), the
group rebalances and a standby receives the partition. No consensus of our own: the
coordinator's generation and session timeout are the election.

Two actives of one model must be impossible, including the zombie case (an active paused
past its session, the lock handed over, then waking up). :attr:`KafkaLock.held` is
therefore a lease: True only while the partition is assigned *and* the newest heartbeat
response is younger than half the session timeout (see
:meth:`~streamcl.connectors.kafka.KafkaSource.lease_valid`). The broker evicts a member a
full session timeout after its last heartbeat, and the new owner must then still join,
sync and restore, so a zombie's lease has expired before a new active can learn: it stops
learning and publishing, and writes no checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError

__all__ = ["KafkaLock"]

log = logging.getLogger(__name__)

_ADMIN_KEYS = ("bootstrap_servers", "client_id", "security_protocol", "request_timeout_ms")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lock: KafkaLock) -> None:
        self.lock = lock

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.lock._set(False, "revoked")

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.lock._set(bool(assigned), "assigned")

    def on_partitions_lost(self, lost: Sequence[TopicPartition]) -> None:
        self.lock._set(False, "lost")


class KafkaLock:
    """Hold-or-wait on the single partition of ``topic`` in consumer group ``group_id``.

    Parameters
    ----------
    topic
        Lock topic (created with one partition if missing).
    config
        kafka-python consumer options (copied); ``group_id`` names the lock group.
    lease_fraction
        :attr:`held` needs a heartbeat response younger than this fraction of
        ``session_timeout_ms``.

    Attributes
    ----------
    acquired_at : float or None
        ``time.monotonic()`` when the partition was last assigned.
    """

    def __init__(self, topic: str, config: Mapping[str, Any], lease_fraction: float = 0.5) -> None:
        self.topic = topic
        self.config = {**dict(config), "enable_auto_commit": False}
        self.lease_fraction = lease_fraction
        self.acquired_at: float | None = None
        self._assigned = False
        self._consumer: KafkaConsumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set(self, assigned: bool, why: str) -> None:
        if assigned and not self._assigned:
            self.acquired_at = time.monotonic()
        self._assigned = assigned
        log.info("learner lock %s: %s", self.topic, "held" if assigned else f"not held ({why})")

    @property
    def held(self) -> bool:
        """True while this instance owns the lock partition and its lease is fresh."""
        consumer = self._consumer
        if not self._assigned or consumer is None:
            return False
        heartbeat = getattr(getattr(consumer, "_coordinator", None), "heartbeat", None)
        if heartbeat is None:
            return False
        session_s = float(self.config.get("session_timeout_ms", 45_000)) / 1000.0
        last = max(heartbeat.last_receive, heartbeat.last_reset)
        return bool(time.monotonic() - last < self.lease_fraction * session_s)

    def ensure_topic(self) -> None:
        """Create the lock topic with one partition unless it exists."""
        admin = KafkaAdminClient(**{k: self.config[k] for k in _ADMIN_KEYS if k in self.config})
        try:
            admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def start(self) -> None:
        """Join the lock group on a background thread (its own consumer, polled there)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="streamcl-lock", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._consumer is None:
                    self.ensure_topic()
                    self._consumer = KafkaConsumer(**self.config)
                    self._consumer.subscribe([self.topic], listener=_Listener(self))
                self._consumer.poll(timeout_ms=200)
            except KafkaError as exc:
                log.warning("learner lock: %s", exc)
                self._stop.wait(0.5)

    def close(self) -> None:
        """Leave the lock group (a standby takes over at once, without waiting a session)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._assigned = False
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:  # closing must not fail shutdown
                log.exception("closing the lock consumer failed")
            self._consumer = None
