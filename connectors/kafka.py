"""Kafka source: consumer group, manual commits, rebalances, watchdog.

The source consumes in a consumer group and commits by hand. The producers that send dead
letters and predictions are in :mod:`streamcl.connectors.kafka_sinks`; the kafka-python
options built from settings in :mod:`streamcl.connectors.kafka_config`.

Records are consumed as raw bytes (no kafka-python deserializers: a raising deserializer
hangs the next ``poll()``); decoding happens in :mod:`streamcl.events`.

Offsets: the source tracks, per partition, the offset after the last record it returned.
The stream loop handles every record returned by :meth:`KafkaSource.read` before it calls
``read`` again, and kafka-python runs rebalance callbacks only inside ``poll()``, so when a
partition is revoked every record already returned from it has been handled, and committing
the tracked offset loses nothing and repeats nothing. Checkpointed positions
(:meth:`KafkaSource.position` / :meth:`KafkaSource.seek`) are the source of truth for the
model; the Kafka commit is progress reporting for lag dashboards and for the next owner of a
partition after a rebalance.

Nothing here connects in ``__init__``: the consumer is built on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from streamcl.connectors.base import Position, Record
from streamcl.connectors.kafka_base import KafkaSourceBase, settings_topics
from streamcl.connectors.kafka_config import consumer_config
from streamcl.connectors.kafka_health import group_reason, last_success, topic_ids

if TYPE_CHECKING:
    from streamcl.settings import Settings

__all__ = ["KafkaSource"]

log = logging.getLogger(__name__)


def _key(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def _tp(key: str) -> TopicPartition:
    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition))


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Routes kafka-python's rebalance callbacks to the source.

    kafka-python 3 runs these on its IO thread while the loop thread waits in ``poll()``;
    blocking consumer calls are refused there, so the revocation commit is awaited.
    """

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        offsets = self.source._on_revoked(list(revoked))
        consumer = self.source._consumer
        if offsets and consumer is not None:
            try:
                await consumer.commit_async(offsets)
            except Exception as exc:  # progress reporting only: never break the rebalance
                log.warning("commit on revocation failed: %s", exc)
                return
            log.info("committed on revocation: %s", {_key(t): m.offset for t, m in offsets.items()})
        for tp in revoked:
            self.source._committed.pop(_key(tp), None)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.source._on_assigned(list(assigned))

    async def on_partitions_lost(self, lost: Sequence[TopicPartition]) -> None:
        # Forced out of the group (session expired, fenced): another member may own these
        # already, so nothing is committed and the state built on them is dropped.
        self.source._lose([_key(tp) for tp in lost])


class KafkaSource(KafkaSourceBase):
    """Kafka topics as a :class:`~streamcl.connectors.base.Source`, read through kafka-python.

    Parameters are those of :class:`~streamcl.connectors.kafka_base.KafkaSourceBase`, and
    ``config``: kafka-python ``KafkaConsumer`` options; copied, never mutated. With a
    ``group_id`` the source subscribes in that consumer group (or, ``subscribe`` False,
    commits under it); without, it assigns itself every partition of ``topics``.
    ``enable_auto_commit`` is forced off and deserializers are dropped (records are bytes).
    The callbacks ``on_revoked`` and ``on_lost`` run on kafka-python's IO thread.
    """

    _log = log

    def __init__(
        self,
        topics: Sequence[str],
        config: Mapping[str, Any],
        watchdog_s: float = 60.0,
        commit_interval_s: float = 5.0,
        on_lag: Callable[[str, int, int], None] | None = None,
        on_records: Callable[[str, int], None] | None = None,
        before_commit: Callable[[], None] | None = None,
        subscribe: bool = True,
    ) -> None:
        super().__init__(
            topics, watchdog_s, commit_interval_s, on_lag, on_records, before_commit, subscribe
        )
        self.config = {**dict(config), "enable_auto_commit": False}
        for name in ("key_deserializer", "value_deserializer"):
            self.config.pop(name, None)
        self._ids_checked = 0.0
        self._consumer: KafkaConsumer | None = None
        self._last_records = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> KafkaSource:
        """A source for ``settings.kafka``: its events topics plus the labels topic.

        ``kwargs`` go to the constructor (``on_lag``, ``on_records``, ``before_commit``).
        """
        k = settings.kafka
        return cls(
            settings_topics(k),
            consumer_config(k),
            watchdog_s=k.watchdog_s,
            commit_interval_s=k.commit_interval_s,
            **kwargs,
        )

    # -- connection ----------------------------------------------------------------------------
    @property
    def group(self) -> bool:
        """True when consuming in a consumer group (``group_id`` set)."""
        return self.config.get("group_id") is not None

    def _connect(self) -> KafkaConsumer:
        if self._consumer is None:
            if self._closed:
                raise RuntimeError("KafkaSource is closed")
            consumer = KafkaConsumer(**self.config)
            self._connected_at = time.monotonic()
            if self.group and self.subscribe:
                consumer.subscribe(list(self.topics), listener=_Listener(self))
            else:
                parts = [
                    TopicPartition(t, p)
                    for t in self.topics
                    for p in sorted(consumer.partitions_for_topic(t) or ())
                ]
                if not parts:
                    consumer.close(autocommit=False)
                    raise KafkaError(f"no partitions found for topics {list(self.topics)}")
                consumer.assign(parts)
            self._consumer = consumer
            if not (self.group and self.subscribe):
                if not self.group:  # with a group, _on_assigned checks
                    self._check_recreated()
                self._on_assigned(list(consumer.assignment()))
        return self._consumer

    def assignment(self) -> list[str]:
        """``"topic:partition"`` of the partitions this source holds now (sorted)."""
        if self._consumer is None:
            return []
        return sorted(_key(tp) for tp in self._consumer.assignment())

    # -- reading -------------------------------------------------------------------------------
    def read(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records from any assigned partition, waiting up to ``timeout_s``.

        Every record returned by the previous call must have been handled (predicted, learned
        or dead-lettered): this call may commit their offsets and may run a rebalance.
        Broker errors are logged and give an empty list (see :meth:`health`).
        """
        try:
            consumer = self._connect()
            if time.monotonic() - self._ids_checked >= 1.0:
                self._check_recreated()
            if self._halted:
                return []
            if self.commit_interval_s and (
                time.monotonic() - self._last_commit >= self.commit_interval_s
            ):
                self._commit(self.position(), wait=False)
            polled = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            log.warning("kafka poll failed: %s", self._error)
            time.sleep(min(timeout_s, 0.5))
            return []
        self._error = ""
        out: list[Record] = []
        for tp, messages in polled.items():
            for m in messages:
                out.append(
                    Record(
                        value=m.value if m.value is not None else b"",
                        key=m.key,
                        topic=m.topic,
                        partition=m.partition,
                        offset=m.offset,
                        timestamp=m.timestamp / 1000.0 if m.timestamp >= 0 else None,
                        headers=tuple((h[0], h[1] or b"") for h in m.headers),
                    )
                )
            if messages:
                self._next[_key(tp)] = messages[-1].offset + 1
                if self.on_records is not None:
                    self.on_records(tp.topic, len(messages))
        if out:
            self._last_records = time.monotonic()
        self._report_lag()
        return out

    def lag(self) -> dict[str, int]:
        """Records behind the high-water mark per ``"topic:partition"`` (after a fetch)."""
        out: dict[str, int] = {}
        consumer = self._consumer
        if consumer is None:
            return out
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            nxt = self._next.get(_key(tp))
            if highwater is None:
                continue
            if nxt is None:
                try:
                    nxt = consumer.position(tp, timeout_ms=0)
                except (KafkaError, AssertionError):
                    nxt = None
                if nxt is None:
                    continue
            out[_key(tp)] = max(0, highwater - nxt)
        return out

    # -- positions -----------------------------------------------------------------------------
    def position(self) -> Position:
        """``{"topic:partition": next offset}`` for the assigned partitions.

        The next offset is the one after the last record returned by :meth:`read` (or where
        the consumer will start, for a partition nothing was read from yet). Before the
        first read this is the position given to :meth:`seek`, if any.
        """
        out = dict(self._targets)
        consumer = self._consumer
        if consumer is None:
            return out
        for tp in consumer.assignment():
            nxt = self._next.get(_key(tp))
            if nxt is None:
                try:
                    nxt = consumer.position(tp, timeout_ms=1_000)
                except KafkaError as exc:
                    log.warning("no position for %s: %s", _key(tp), exc)
                    nxt = None
            if nxt is not None:
                out[_key(tp)] = nxt
        return out

    def _seek_now(self, consumer: KafkaConsumer, key: str, offset: int) -> None:
        consumer.seek(_tp(key), offset)

    def commit(self, position: Position) -> None:
        """Commit ``position`` for the partitions assigned now; only forward, never raises.

        Waits at most ``min(request_timeout_ms, 5 s)``; a failed commit is logged (it is
        progress reporting only). A no-op without a consumer group or before connecting.
        """
        self._commit(position, wait=True)

    def _commit_offsets(
        self, consumer: KafkaConsumer, offsets: Mapping[str, int], wait: bool
    ) -> None:
        meta = {_tp(k): OffsetAndMetadata(off, "", -1) for k, off in offsets.items()}
        if not wait:
            consumer.commit_async(meta, callback=self._committed_async)
            return
        timeout_ms = min(int(self.config.get("request_timeout_ms", 30_000)), 5_000)
        try:
            consumer.commit(meta, timeout_ms=timeout_ms)
        except (KafkaError, AssertionError) as exc:
            log.warning("offset commit failed (progress report only): %s", exc)
            return
        self._mark_committed(offsets)

    def _committed_async(self, offsets: Mapping[TopicPartition, Any], response: Any) -> None:
        if isinstance(response, Exception):
            log.warning("offset commit failed (progress report only): %s", response)
            return
        self._mark_committed({_key(tp): meta.offset for tp, meta in offsets.items()})

    # -- rebalances ----------------------------------------------------------------------------
    def _on_revoked(self, revoked: list[TopicPartition]) -> dict[TopicPartition, Any]:
        """Offsets to commit for the revoked partitions: all they returned was handled.

        Runs on kafka-python's IO thread while the loop thread waits in ``poll()``, so no
        record of these partitions is in flight (see the module docstring).
        """
        keys = [_key(tp) for tp in revoked]
        due = self._revoking(keys)
        if due and self.before_commit is not None:
            self.before_commit()
        for k in keys:
            self._next.pop(k, None)
        return {_tp(k): OffsetAndMetadata(off, "", -1) for k, off in due.items()}

    def _check_recreated(self) -> None:
        """Notice topics deleted and recreated (new topic id) and tell ``on_recreated``."""
        self._ids_checked = time.monotonic()
        self._note_ids(topic_ids(self._consumer, self.topics), self.assignment())

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Apply pending :meth:`seek` targets; others resume from the committed offset."""
        log.info("partitions assigned: %s", sorted(_key(tp) for tp in assigned))
        if self.group:
            self._check_recreated()
        consumer = self._consumer
        self._ask_targets([_key(tp) for tp in assigned])
        for tp in assigned:
            target = self._targets.pop(_key(tp), None)
            if target is not None and consumer is not None:
                consumer.seek(tp, target)
                self._next[_key(tp)] = target

    def lease_valid(self, fraction: float = 0.5) -> bool:
        """True while this member's group session is surely alive (a lease, not a guess).

        The broker evicts a member ``session_timeout_ms`` after its last heartbeat; the
        member holds its partitions while its newest heartbeat response (or join) is
        younger than ``fraction`` of that. A paused process (a zombie) that wakes up finds
        its lease expired before a new owner can have restored the state. Always True
        outside a consumer group.
        """
        consumer = self._consumer
        if consumer is None or not (self.group and self.subscribe):
            return consumer is not None
        heartbeat = getattr(getattr(consumer, "_coordinator", None), "heartbeat", None)
        if heartbeat is None:
            return False
        session_s = float(self.config.get("session_timeout_ms", 45_000)) / 1000.0
        last = max(heartbeat.last_receive, heartbeat.last_reset)
        return bool(time.monotonic() - last < fraction * session_s)

    # -- health and closing -------------------------------------------------------------------
    def _silent_s(self) -> float:
        """Seconds since the newest fetch response, metadata refresh or record."""
        since = last_success(self._consumer, self._last_records, self._connected_at or 0.0)
        return time.monotonic() - since

    def _group_reason(self) -> str:
        if self.group and self._consumer is not None and not self._consumer.assignment():
            return group_reason(self._consumer, self.config, self._connected_at, self._error)
        return ""

    def _close_consumer(self, consumer: KafkaConsumer) -> None:
        consumer.close(autocommit=False)
