"""A learner lock elected through Kafka: the consumer-group owner of a one-partition topic.

Every instance of a learner (``learner.standby``) joins the group ``<group_id>.lock`` on
the lock topic, which has a single partition. Kafka's group coordinator assigns that
partition to exactly one live member: that member is the active learner, the others are
hot standbys. When the active one dies, its session expires (``session_timeout_ms``), the
group rebalances and a standby receives the partition. No consensus of our own: the
coordinator's generation and session timeout are the election.

Two actives of one model must be impossible, including the zombie case (an active paused
past its session, the lock handed over, then waking up). :attr:`KafkaLock.held` is
therefore a lease: True only while the partition is assigned, the member is in a stable
generation with no rejoin pending (a heartbeat answered "rebalancing" or "unknown member"
ends it at once), *and* the newest heartbeat response is younger than half the session
timeout. The broker evicts a member a
full session timeout after its last heartbeat, and the new owner must then still join,
sync and restore, so a zombie's lease has expired before a new active can learn: it stops
learning and publishing, and writes no checkpoint.

A clean revocation (a rebalance, or the active leaving) is a hand-off: the callback sets
:attr:`KafkaLock.releasing` and waits (at most ``release_timeout_s``) until the learner has
written a final checkpoint and called :meth:`KafkaLock.released`. The lock group uses the
sticky assignor, so a standby joining does not move the lock.

The remaining window, as with any lease without a fenced store: a process paused *during*
a checkpoint write, past its session, finishes that one write late.
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
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from kafka.coordinator.base import MemberState
from kafka.errors import KafkaError, TopicAlreadyExistsError

__all__ = ["KafkaLock"]

log = logging.getLogger(__name__)

_ADMIN_KEYS = ("bootstrap_servers", "client_id", "security_protocol", "request_timeout_ms")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lock: KafkaLock) -> None:
        self.lock = lock

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.lock._release()

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

    def __init__(
        self,
        topic: str,
        config: Mapping[str, Any],
        lease_fraction: float = 0.5,
        release_timeout_s: float = 10.0,
    ) -> None:
        self.topic = topic
        self.config = {
            **dict(config),
            "enable_auto_commit": False,
            "partition_assignment_strategy": (StickyPartitionAssignor,),
        }
        self.lease_fraction = lease_fraction
        self.release_timeout_s = release_timeout_s
        self.acquired_at: float | None = None
        #: Set while a revocation waits for the learner's final checkpoint.
        self.releasing = False
        self._released = threading.Event()
        self._assigned = False
        self._expired = False
        self._consumer: KafkaConsumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set(self, assigned: bool, why: str) -> None:
        if assigned and not self._assigned:
            self.acquired_at = time.monotonic()
            self._expired = False  # a new generation: a new lease
        self._assigned = assigned
        log.info("learner lock %s: %s", self.topic, "held" if assigned else f"not held ({why})")

    def _release(self) -> None:
        """Revocation: let the learner checkpoint (bounded wait), then give the lock up."""
        if self._assigned:  # a revocation, not a loss: still a member of the generation
            self._released.clear()
            self.releasing = True
            if not self._released.wait(self.release_timeout_s):
                log.error("learner did not release the lock in %.0f s", self.release_timeout_s)
        self.releasing = False
        self._set(False, "revoked")

    def _expire(self, limit: float) -> None:
        if not self._expired:
            log.error("learner lock lease expired (no heartbeat answer for %.1f s)", limit)
        self._expired = True

    def _watch_heartbeats(self, consumer: KafkaConsumer) -> None:
        """Expire the lease when heartbeat answers had a gap (a pause), even if they resumed.

        An expired lease stays expired: a heartbeat answered after a pause (by a broker that
        does not check the generation) must not revive it; only a new assignment does.
        """
        heartbeat = consumer._coordinator.heartbeat
        received = heartbeat.received_heartbeat
        limit = self.lease_s

        def received_heartbeat() -> None:
            if (
                self._assigned
                and time.monotonic() - max(heartbeat.last_receive, heartbeat.last_reset) >= limit
            ):
                self._expire(limit)
            received()

        heartbeat.received_heartbeat = received_heartbeat

    def released(self) -> None:
        """The learner wrote its final checkpoint and stopped: the revocation may proceed."""
        self._released.set()

    @property
    def held(self) -> bool:
        """True while this instance owns the lock partition and its lease is fresh."""
        consumer = self._consumer
        if not self._assigned or consumer is None:
            return False
        coordinator = getattr(consumer, "_coordinator", None)
        heartbeat = getattr(coordinator, "heartbeat", None)
        if heartbeat is None or coordinator is None:
            return False
        if coordinator.state is not MemberState.STABLE or coordinator.rejoin_needed:
            return False
        return self._lease_left(heartbeat)

    @property
    def lease_s(self) -> float:
        """Seconds a heartbeat answer keeps the lease: ``lease_fraction`` of the session."""
        return self.lease_fraction * float(self.config.get("session_timeout_ms", 45_000)) / 1000

    def _lease_left(self, heartbeat: Any) -> bool:
        if time.monotonic() - max(heartbeat.last_receive, heartbeat.last_reset) >= self.lease_s:
            self._expire(self.lease_s)
        return not self._expired

    @property
    def lease_fresh(self) -> bool:
        """True while assigned with an unexpired lease, even with a rejoin pending.

        A clean revocation (still a member, heartbeats answered) keeps it; a zombie whose
        heartbeats had a gap past the lease has lost it, and must not write a checkpoint.
        """
        consumer = self._consumer
        heartbeat = getattr(getattr(consumer, "_coordinator", None), "heartbeat", None)
        if not self._assigned or heartbeat is None:
            return False
        return self._lease_left(heartbeat)

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
                    self._watch_heartbeats(self._consumer)
                    self._consumer.subscribe([self.topic], listener=_Listener(self))
                if self._expired and self._assigned:  # rejoin for a fresh lease
                    self._consumer.unsubscribe()
                    self._set(False, "lease expired")
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
