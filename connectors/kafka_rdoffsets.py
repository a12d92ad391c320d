"""Offsets of the librdkafka source: commits, start offsets and the rebalance callbacks.

The base of :class:`~streamcl.connectors.kafka_rdsource.RdKafkaSource`, kept apart to keep
modules short. Besides what :class:`~streamcl.connectors.kafka_base.KafkaSourceBase`
tracks per ``"topic:partition"`` (the next offset to hand out, ``_next``; what is committed,
``_committed``; seeks waiting for an assignment, ``_targets``) it keeps where an unread
partition starts (``_start``). librdkafka runs the callbacks inside
``consume()`` on the loop thread: when partitions are revoked every record returned from
them has been handled, so their ``_next`` offsets are committed there (after
``before_commit``); newly assigned partitions start at their pending seek target (or
``on_assigned``'s), else at the group's committed offset; lost partitions commit nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition
from streamcl.connectors.base import Position
from streamcl.connectors.kafka_base import KafkaSourceBase
from streamcl.connectors.kafka_rdhealth import RdStats

__all__ = ["RdOffsets", "key_of", "partition_of"]

log = logging.getLogger(__name__)


def key_of(topic: str, partition: int) -> str:
    """``"topic:partition"``."""
    return f"{topic}:{partition}"


def partition_of(key: str, offset: int = OFFSET_INVALID) -> TopicPartition:
    """The ``TopicPartition`` of a ``"topic:partition"`` key, at ``offset``."""
    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition), offset)


class RdOffsets(KafkaSourceBase):
    """Offset bookkeeping and rebalance callbacks; the subclass owns the consumer.

    Arguments are :class:`~streamcl.connectors.kafka_base.KafkaSourceBase`'s.
    """

    _stats: RdStats
    group_id: str | None
    cooperative: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start: dict[str, int] = {}
        self._dropping = False

    @property
    def group(self) -> bool:
        """True when consuming in a consumer group (``group.id`` set)."""
        return self.group_id is not None

    def _check_ids(self, wait: bool, assigning: Sequence[str] = ()) -> None:
        raise NotImplementedError

    def _seek_now(self, consumer: Any, key: str, offset: int) -> None:
        consumer.seek(partition_of(key, offset))

    def commit(self, position: Position) -> None:
        """Commit ``position`` for the partitions assigned now; only forward, never raises.

        Synchronous; skipped while :meth:`health` is failing (a commit would wait for an
        absent coordinator). A no-op without a consumer group or before connecting.
        """
        self._commit(position, wait=True)

    def _commit_offsets(self, consumer: Any, offsets: Mapping[str, int], wait: bool) -> None:
        tps = [partition_of(k, o) for k, o in offsets.items()]
        try:
            if not wait:
                consumer.commit(offsets=tps, asynchronous=True)
                return
            if self._silent_s() > self.watchdog_s:
                log.warning("offset commit skipped: no kafka response for %.0f s", self._silent_s())
                return
            consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed (progress report only): %s", exc)
            return
        self._mark_committed(offsets)

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is not None:
            log.warning("offset commit failed (progress report only): %s", err)
            return
        ok = [tp for tp in partitions if tp.error is None and tp.offset >= 0]
        self._mark_committed({key_of(tp.topic, tp.partition): tp.offset for tp in ok})

    # -- rebalances (inside consume(), on the loop thread) ---------------------------------------
    def _start_at(self, keys: list[str]) -> list[TopicPartition]:
        """Start offsets for newly assigned ``keys``: pending seeks, else the committed offset."""
        log.info("partitions assigned: %s", sorted(keys))
        self._ask_targets(keys)
        out = []
        for key in keys:
            target = self._targets.pop(key, None)
            self._start.pop(key, None)
            if target is not None:
                self._next[key] = target
            out.append(partition_of(key, OFFSET_INVALID if target is None else target))
        return out

    def _assign_cb(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._stats.last_coordinator = time.monotonic()
        keys = [key_of(tp.topic, tp.partition) for tp in partitions]
        self._check_ids(wait=True, assigning=keys)
        start = self._start_at(keys)
        (consumer.incremental_assign if self.cooperative else consumer.assign)(start)

    def _revoke_cb(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [key_of(tp.topic, tp.partition) for tp in partitions]
        offsets = self._revoking(keys)
        if offsets and not self._dropping:
            if self.before_commit is not None:
                self.before_commit()
            self._commit_offsets(consumer, offsets, wait=True)
            log.info("committed on revocation: %s", offsets)
        self._forget(keys)

    def _lost_cb(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._lose([key_of(tp.topic, tp.partition) for tp in partitions])

    def _forget(self, keys: list[str]) -> None:
        super()._forget(keys)
        for k in keys:
            self._start.pop(k, None)

    def _forget_all(self) -> None:
        super()._forget_all()
        self._start.clear()
