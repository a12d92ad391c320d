"""Kafka source on librdkafka (confluent-kafka ``Consumer``): :class:`KafkaSource`'s contract.

kafka-python's consumer returns about 20k records/s of the loop thread, less than the loop
learns; librdkafka fetches and parses on its own threads and ``consume(n)`` hands over a
batch in a few microseconds a record (``benchmarks/kafka_throughput.py``). The setting
``kafka.consumer_client: confluent-kafka`` chooses this source.

Semantics are those of :class:`~streamcl.connectors.kafka.KafkaSource` (see its module):
manual commits only (auto-commit and offset store off), positions are the offset after the
last record returned, checkpointed positions win over the group's commits. librdkafka runs
the rebalance callbacks inside ``consume()`` on the loop thread, so when partitions are
revoked every record returned from them has been handled and their offsets are committed
there; on assignment, pending :meth:`RdKafkaSource.seek` targets (and ``on_assigned``'s)
become the start offsets passed to ``assign``. Lost partitions are dropped, not committed.

Health, the group join state and the lease come from librdkafka's statistics (every
``statistics.interval.ms``, served by ``consume()``): a broker connection UP counts as a
success for the watchdog, and the lease is the age of the last response on the group
coordinator connection (heartbeats). Topic ids (recreated topics) come from an admin
client's ``describe_topics``. Nothing connects in ``__init__``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException
from streamcl.connectors.base import Position, Record
from streamcl.connectors.kafka_base import settings_topics
from streamcl.connectors.kafka_rdhealth import RdStats, TopicIds
from streamcl.connectors.kafka_rdkafka import rdkafka_consumer_config
from streamcl.connectors.kafka_rdoffsets import RdOffsets, key_of, partition_of

if TYPE_CHECKING:
    from streamcl.settings import Settings

__all__ = ["RdKafkaSource"]

log = logging.getLogger(__name__)

#: A group id for assign-only use (librdkafka wants one); nothing is committed under it.
_NO_GROUP = "streamcl-assign-only"


class RdKafkaSource(RdOffsets):
    """Kafka topics as a :class:`~streamcl.connectors.base.Source`, read through librdkafka.

    Parameters are those of :class:`~streamcl.connectors.kafka_base.KafkaSourceBase`, and
    ``config``: librdkafka ``Consumer`` options (:func:`rdkafka_consumer_config`), copied;
    ``group.id`` None assigns every partition and commits nothing. ``max_poll_records``
    caps each ``consume()`` (kafka-python's ``max_poll_records``). The callbacks
    ``on_assigned``, ``on_revoked``, ``on_lost`` and ``on_recreated`` and the attribute
    ``log_ids`` behave as KafkaSource's (they run on the loop thread, inside :meth:`read`).
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
        max_poll_records: int = 100_000,
    ) -> None:
        super().__init__(
            topics, watchdog_s, commit_interval_s, on_lag, on_records, before_commit, subscribe
        )
        self.config = {**dict(config), "enable.auto.commit": False}
        self.config["enable.auto.offset.store"] = False
        self.group_id = self.config.get("group.id")
        session_ms = float(self.config.get("session.timeout.ms", 45_000))
        self.session_s = session_ms / 1000.0
        self.config.setdefault("statistics.interval.ms", int(min(1_000, session_ms / 4)))
        self.cooperative = "cooperative" in str(self.config.get("partition.assignment.strategy"))
        self.max_poll_records = max_poll_records
        self._asked: dict[str, float] = {}
        self._last_ok = 0.0
        self._stats = RdStats()
        refresh_ms = float(self.config.get("topic.metadata.refresh.interval.ms", 300_000))
        self._ids = TopicIds(self.topics, self.config, refresh_ms / 1000.0)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RdKafkaSource:
        """A source for ``settings.kafka``: its events topics plus the labels topic."""
        k = settings.kafka
        return cls(
            settings_topics(k),
            rdkafka_consumer_config(k),
            watchdog_s=k.watchdog_s,
            commit_interval_s=k.commit_interval_s,
            max_poll_records=k.max_poll_records,
            **kwargs,
        )

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._consumer is not None:
            return self._consumer
        if self._closed:
            raise RuntimeError("RdKafkaSource is closed")
        cfg = {**self.config, "group.id": self.group_id or _NO_GROUP}
        cfg.update(stats_cb=self._stats.update, error_cb=self._on_error, on_commit=self._on_commit)
        consumer = Consumer(cfg, logger=log)
        self._connected_at = time.monotonic()
        self._dropping = False
        self._consumer = consumer
        if self.group and self.subscribe:
            consumer.subscribe(
                list(self.topics),
                on_assign=self._assign_cb,
                on_revoke=self._revoke_cb,
                on_lost=self._lost_cb,
            )
            return consumer
        try:
            meta = consumer.list_topics(timeout=self.session_s + 5.0).topics
            keys = [
                key_of(t, p) for t in self.topics if t in meta for p in sorted(meta[t].partitions)
            ]
            if not keys:
                raise KafkaException(f"no partitions found for topics {list(self.topics)}")
            self._check_ids(wait=True, assigning=keys)
            consumer.assign(self._start_at(keys))
        except Exception:
            self._consumer = None
            consumer.close()
            raise
        return consumer

    def assignment(self) -> list[str]:
        """``"topic:partition"`` of the partitions this source holds now (sorted)."""
        consumer = self._consumer
        if consumer is None:
            return []
        try:
            held = consumer.assignment()
        except (KafkaException, RuntimeError):  # closed meanwhile (health asked from HTTP)
            return []
        return sorted(key_of(tp.topic, tp.partition) for tp in held)

    # -- reading -------------------------------------------------------------------------------
    def read(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records from any assigned partition, waiting up to ``timeout_s``.

        Every record returned by the previous call must have been handled: this call may
        commit their offsets and may run a rebalance. Broker errors are logged and give an
        empty list (see :meth:`health`).
        """
        try:
            consumer = self._connect()
            self._check_ids(wait=False)
            if self._halted:
                return []
            if self.commit_interval_s and (
                time.monotonic() - self._last_commit >= self.commit_interval_s
            ):
                self._commit(self.next_offsets(), wait=False)
            n = max(1, min(max_records, self.max_poll_records))
            # what is queued now; else wait for one record at most timeout_s, then take what
            # came with it (consume(n, timeout) alone would wait for n records or the timeout)
            messages = consumer.consume(n, 0)
            if not messages:
                first = consumer.poll(timeout_s)
                if first is not None:
                    messages = [first, *consumer.consume(n - 1, 0)] if n > 1 else [first]
        except (KafkaException, RuntimeError) as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            log.warning("kafka consume failed: %s", self._error)
            time.sleep(min(timeout_s, 0.5))
            return []
        out: list[Record] = []
        last: dict[tuple[str, int], int] = {}
        counts: dict[str, int] = {}
        for m in messages:
            err = m.error()
            if err is not None:
                self._error = str(err)
                log.warning("kafka consume error on %s[%s]: %s", m.topic(), m.partition(), err)
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            kind, ts = m.timestamp()
            headers = m.headers()
            out.append(
                Record(
                    m.value() or b"",
                    m.key(),
                    topic,
                    partition,
                    offset,
                    ts / 1000.0 if kind and ts >= 0 else None,
                    tuple((h, v or b"") for h, v in headers) if headers else (),
                )
            )
            last[(topic, partition)] = offset + 1
            counts[topic] = counts.get(topic, 0) + 1
        if out:
            self._last_ok = time.monotonic()
            self._error = ""
            for (topic, partition), nxt in last.items():
                self._next[key_of(topic, partition)] = nxt
            if self.on_records is not None:
                for topic, c in counts.items():
                    self.on_records(topic, c)
        self._report_lag()
        return out

    def end_position(self) -> Position:
        """High-water mark per assigned ``"topic:partition"`` known from fetches; never blocks."""
        out: dict[str, int] = {}
        consumer = self._consumer
        if consumer is None:
            return out
        for key in self.assignment():
            try:
                _, high = consumer.get_watermark_offsets(partition_of(key), cached=True)
            except (KafkaException, RuntimeError):  # closed meanwhile
                continue
            if high is not None and high >= 0:
                out[key] = high
        return out

    def lag(self) -> dict[str, int]:
        """Records behind the high-water mark per ``"topic:partition"`` (after a fetch)."""
        out: dict[str, int] = {}
        for key, high in self.end_position().items():
            nxt = self._next.get(key, self._start.get(key))
            if nxt is None and time.monotonic() - self._asked.get(key, -10.0) >= 5.0:
                self._asked[key] = time.monotonic()  # one try per 5 s: may wait up to 1 s
                nxt = self._start_offset(self._consumer, key)
            if nxt is not None:
                out[key] = max(0, high - nxt)
        return out

    # -- positions -----------------------------------------------------------------------------
    def position(self) -> Position:
        """``{"topic:partition": next offset}`` for the assigned partitions.

        The offset after the last record returned by :meth:`read`; for a partition nothing
        was read from yet, where the consumer starts (the group's committed offset, else the
        low or high watermark per ``auto.offset.reset``; asked once, up to 1 s). Before the
        first read this is the position given to :meth:`seek`, if any.
        """
        out = dict(self._targets)
        consumer = self._consumer
        if consumer is None:
            return out
        for key in self.assignment():
            nxt = self._next.get(key, self._start.get(key))
            if nxt is None:
                nxt = self._start_offset(consumer, key)
            if nxt is not None:
                out[key] = nxt
        return out

    def _start_offset(self, consumer: Any, key: str) -> int | None:
        try:
            if self.group:
                (tp,) = consumer.committed([partition_of(key)], timeout=1.0)
                if tp.offset >= 0:
                    self._start[key] = tp.offset
                    return int(tp.offset)
            low, high = consumer.get_watermark_offsets(partition_of(key), timeout=1.0)
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: closed meanwhile
            log.warning("no position for %s: %s", key, exc)
            return None
        self._start[key] = low if self.config.get("auto.offset.reset") != "latest" else high
        return self._start[key]

    # -- topic ids -----------------------------------------------------------------------------
    def _check_ids(self, wait: bool, assigning: Sequence[str] = ()) -> None:
        """Notice topics deleted and recreated (new topic id) and tell ``on_recreated``.

        ``wait``: ask and wait up to 5 s (on assignment, ``assigning`` the keys being
        assigned); else ask once per metadata refresh interval, answered on a later call.
        """
        current = self._ids.poll(wait)
        if current:
            self._note_ids(current, [*self.assignment(), *assigning])

    # -- health and lease ----------------------------------------------------------------------
    def _on_error(self, err: Any) -> None:
        self._error = str(err)
        log.warning("kafka client error: %s", err)

    def lease_valid(self, fraction: float = 0.5) -> bool:
        """True while this member's group session is surely alive (see KafkaSource's).

        The newest response on the group coordinator connection (heartbeats; the last
        assignment) must be younger than ``fraction`` of ``session.timeout.ms``, as seen in
        librdkafka's statistics. Always True outside a consumer group once connected.
        """
        if self._consumer is None or not (self.group and self.subscribe):
            return self._consumer is not None
        return time.monotonic() - self._stats.last_coordinator < fraction * self.session_s

    def _silent_s(self) -> float:
        return time.monotonic() - max(self._last_ok, self._stats.last_ok, self._connected_at or 0.0)

    def _group_reason(self) -> str:
        if not (self.group and self.subscribe) or self.assignment():
            return ""
        waited = time.monotonic() - (self._connected_at or time.monotonic())
        detail = f"; last error: {self._error}" if self._error else ""
        return (
            f"no partitions assigned after {waited:.0f} s in group {self.group_id!r} "
            f"(group {self._stats.join_state}{detail}; a join can take up to "
            f"session_timeout_ms={self.session_s * 1000:.0f})"
        )

    def _close_consumer(self, consumer: Any) -> None:
        self._dropping = True  # committed already: the revocation in close() must not wait
        consumer.close()

    def _release(self) -> None:
        self._ids.close()
