"""What the two Kafka sources share: parameters, callbacks, recreated topics, health, close.

:class:`~streamcl.connectors.kafka.KafkaSource` (kafka-python) and
:class:`~streamcl.connectors.kafka_rdsource.RdKafkaSource` (librdkafka) differ in how they
talk to the consumer; the contract around it is one, and kept here once: the constructor's
parameters and callback attributes, the offsets tracked per ``"topic:partition"`` key
(the next one to hand out, the committed one, seeks waiting for an assignment) with
:meth:`KafkaSourceBase.seek` and what a commit or a revocation has to send, the topic-id
check for recreated topics, the :meth:`KafkaSourceBase.health` reasons,
:meth:`KafkaSourceBase.disconnect` and the idempotent :meth:`KafkaSourceBase.close`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streamcl.connectors.base import Position

if TYPE_CHECKING:
    from streamcl.settings.inputs import KafkaSettings

__all__ = ["KafkaSourceBase", "settings_topics"]

log = logging.getLogger(__name__)


def settings_topics(k: KafkaSettings) -> list[str]:
    """The events topics of ``settings.kafka``, plus its labels topic if any (once)."""
    topics = list(k.topics)
    if k.labels_topic and k.labels_topic not in topics:
        topics.append(k.labels_topic)
    return topics


class KafkaSourceBase:
    """The part of a Kafka :class:`~streamcl.connectors.base.Source` that is client-free.

    Parameters
    ----------
    topics
        Topics to consume (events topics, and the labels topic if any); at least one.
    watchdog_s
        :meth:`health` is ``(False, ...)`` after this many seconds without a successful
        fetch response or metadata refresh (the clients do not raise when brokers go).
    commit_interval_s
        Commit handled offsets at most this often, from ``read``; 0 commits only on
        ``commit``, on revocation and on :meth:`close`.
    on_lag
        Called ``(topic, partition, lag)`` after each poll, lag in records
        (``highwater - next offset``).
    on_records
        Called ``(topic, n)`` with the number of records returned per topic.
    before_commit
        Called before each commit (e.g. flush the dead-letter producer, so that a committed
        offset never covers a dead letter still in a buffer).
    subscribe
        With a group id: True subscribes in the group (partitions assigned by Kafka);
        False assigns every partition to this source and uses the group for commits only
        (a hot-standby learner, elected by :mod:`~streamcl.connectors.kafka_lock`).

    Raises
    ------
    ValueError
        ``topics`` is empty.
    """

    _consumer: Any
    #: The logger of the subclass's module (log lines keep their source's name).
    _log: logging.Logger = log

    def __init__(
        self,
        topics: Sequence[str],
        watchdog_s: float,
        commit_interval_s: float,
        on_lag: Callable[[str, int, int], None] | None,
        on_records: Callable[[str, int], None] | None,
        before_commit: Callable[[], None] | None,
        subscribe: bool,
    ) -> None:
        if not topics:
            raise ValueError(f"{type(self).__name__} needs at least one topic")
        self.topics = tuple(topics)
        self.watchdog_s, self.commit_interval_s = watchdog_s, commit_interval_s
        self.on_lag, self.on_records, self.before_commit = on_lag, on_records, before_commit
        self.subscribe = subscribe
        #: Called with the ``"topic:partition"`` keys about to be revoked, before their commit
        #: (kafka-python: on its IO thread, so it must not call blocking consumer methods).
        self.on_revoked: Callable[[list[str]], None] | None = None
        #: Called with the ``"topic:partition"`` keys just assigned; returns where to resume
        #: each (per-partition checkpoints), applied before anything is fetched.
        self.on_assigned: Callable[[list[str]], Mapping[str, int]] | None = None
        #: Called with the keys lost by a forced eviction (nothing is committed for them).
        self.on_lost: Callable[[list[str]], None] | None = None
        #: Topic ids (name -> uuid string) this source's positions refer to: set from a
        #: checkpoint, else those first seen. A topic whose id changes was deleted and
        #: recreated; ``on_recreated`` gets its assigned ``"topic:partition"`` keys before
        #: any pending seek applies, and returns False to stop reading (policy ``fail``).
        self.log_ids: dict[str, str] = {}
        self.on_recreated: Callable[[list[str]], bool] | None = None
        self._halted = False
        self._consumer = None
        self._connected_at: float | None = None
        self._error = ""
        self._closed = False
        self._lock = threading.Lock()
        #: Per ``"topic:partition"``: the offset after the last record returned, the offset
        #: committed (as far as known), and :meth:`seek` targets waiting for an assignment.
        self._next: dict[str, int] = {}
        self._committed: dict[str, int] = {}
        self._targets: dict[str, int] = {}
        self._last_commit = time.monotonic()

    # -- what a client's source provides ---------------------------------------------------------
    @property
    def group(self) -> bool:
        """True when consuming in a consumer group (a group id set)."""
        raise NotImplementedError

    def commit(self, position: Position) -> None:
        """Commit ``position`` for the partitions assigned now; only forward, never raises."""
        raise NotImplementedError

    def _commit_offsets(self, consumer: Any, offsets: Mapping[str, int], wait: bool) -> None:
        """Commit ``offsets`` (asynchronously unless ``wait``), then :meth:`_mark_committed`."""
        raise NotImplementedError

    def assignment(self) -> list[str]:
        """``"topic:partition"`` of the partitions held now (sorted)."""
        raise NotImplementedError

    def _seek_now(self, consumer: Any, key: str, offset: int) -> None:
        """Move the assigned partition ``key`` of ``consumer`` to ``offset``."""
        raise NotImplementedError

    def lag(self) -> dict[str, int]:
        """Records behind the high-water mark per ``"topic:partition"`` (after a fetch)."""
        raise NotImplementedError

    def _group_reason(self) -> str:
        """Why a group member holds no partition yet; ``""`` when it holds some (or no group)."""
        raise NotImplementedError

    def _silent_s(self) -> float:
        """Seconds since the newest fetch response, metadata refresh or record."""
        raise NotImplementedError

    def _close_consumer(self, consumer: Any) -> None:
        """Close ``consumer`` without committing (what was due is committed already)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free what else the source holds besides the consumer (none here)."""

    # -- offsets -----------------------------------------------------------------------------------
    def next_offsets(self) -> Position:
        """``{"topic:partition": next offset}`` of the partitions read or sought; never blocks.

        Safe inside rebalance callbacks (kafka-python's IO thread), unlike ``position``.
        """
        return dict(self._next)

    def seek(self, position: Position) -> None:
        """Resume each partition of ``position`` at its offset.

        Partitions assigned now are moved at once; the others are moved when they are
        assigned (once: a later assignment resumes from the group's committed offset).
        """
        consumer = self._consumer
        assigned = set(self.assignment())
        for key, off in position.items():
            off = int(off)
            if consumer is not None and key in assigned:
                self._seek_now(consumer, key, off)
                self._next[key] = off
                self._targets.pop(key, None)
            else:
                self._targets[key] = off

    def _commit(self, position: Position, wait: bool) -> None:
        """Commit what of ``position`` is held and ahead of the commits, after ``before_commit``.

        A no-op without a consumer group or before connecting.
        """
        consumer = self._consumer
        self._last_commit = time.monotonic()
        if consumer is None or not self.group:
            return
        offsets = self._due(position, set(self.assignment()))
        if not offsets:
            return
        if self.before_commit is not None:
            self.before_commit()
        self._commit_offsets(consumer, offsets, wait)

    def _due(self, position: Position, held: Collection[str]) -> dict[str, int]:
        """The offsets of ``position`` for ``held`` keys past the committed ones: to commit."""
        return {
            k: int(o)
            for k, o in position.items()
            if k in held and int(o) > self._committed.get(k, -1)
        }

    def _mark_committed(self, offsets: Mapping[str, int]) -> None:
        """Note ``offsets`` as committed (only forward)."""
        for k, o in offsets.items():
            self._committed[k] = max(o, self._committed.get(k, -1))

    def _revoking(self, keys: list[str]) -> dict[str, int]:
        """Tell ``on_revoked`` of ``keys``; the handled offsets of those not committed yet."""
        self._log.info("partitions revoked: %s", keys)
        if self.on_revoked is not None and keys:
            self.on_revoked(keys)
        return {
            k: self._next[k]
            for k in keys
            if k in self._next and self._next[k] > self._committed.get(k, -1)
        }

    def _ask_targets(self, keys: list[str]) -> None:
        """Add ``on_assigned``'s start offsets for the newly assigned ``keys`` to the targets."""
        if self.on_assigned is not None and keys:
            for key, off in self.on_assigned(keys).items():
                self._targets[key] = int(off)

    def _lose(self, keys: list[str]) -> None:
        """Forced out of the group (session expired, fenced): another member may own ``keys``.

        Nothing is committed for them; ``on_lost`` is told and what was known is dropped.
        """
        self._log.warning("partitions lost (evicted from the group): %s", keys)
        if self.on_lost is not None and keys:
            self.on_lost(keys)
        self._forget(keys)

    def _forget(self, keys: list[str]) -> None:
        for k in keys:
            self._next.pop(k, None)
            self._committed.pop(k, None)

    def _forget_all(self) -> None:
        """Drop the positions and marks known (the consumer is gone)."""
        for state in (self._next, self._committed, self._targets):
            state.clear()

    # -- shared ------------------------------------------------------------------------------------
    def _report_lag(self) -> None:
        if self.on_lag is None:
            return
        for key, lag in self.lag().items():
            topic, _, partition = key.rpartition(":")
            self.on_lag(topic, int(partition), lag)

    def _note_ids(self, current: Mapping[str, str], held: Iterable[str]) -> None:
        """Compare topic ids ``current`` with :attr:`log_ids`; tell ``on_recreated`` of a change.

        ``held`` are the ``"topic:partition"`` keys this source holds (or is being assigned);
        those of a recreated topic go to ``on_recreated``, which halts reading by returning
        False.
        """
        recreated = [t for t, i in current.items() if self.log_ids.get(t, i) != i]
        self.log_ids.update(current)
        if not recreated:
            return
        keys = sorted(k for k in set(held) if k.rpartition(":")[0] in recreated)
        self._log.error("topic recreated (new topic id): %s", recreated)
        if self.on_recreated is not None and not self.on_recreated(keys):
            self._halted = True

    def health(self) -> tuple[bool, str]:
        """``(False, reason)`` before connecting, or after ``watchdog_s`` without success."""
        if self._closed:
            return False, "kafka source closed"
        if self._consumer is None:
            return False, "kafka not connected yet"
        if self._halted:
            return False, "stopped reading: a topic was recreated (see checkpoint policy)"
        reason = self._group_reason()
        if reason:
            return False, reason
        silent = self._silent_s()
        if silent > self.watchdog_s:
            detail = f" ({self._error})" if self._error else ""
            return False, f"no kafka fetch or metadata for {silent:.0f} s{detail}"
        return True, ""

    @property
    def exhausted(self) -> bool:
        """Never: a topic has no end."""
        return False

    def disconnect(self) -> None:
        """Close the consumer without committing; the next ``read`` connects afresh.

        A hot standby that lost the lock drops what it knew (positions, high-water marks):
        the next takeover restores a checkpoint and must not compare it with stale marks.
        """
        consumer, self._consumer = self._consumer, None
        self._release()
        self._forget_all()
        if consumer is not None:
            try:
                self._close_consumer(consumer)
            except Exception:  # a dead connection must not stop the stand-down
                self._log.exception("closing the kafka consumer failed")

    def close(self) -> None:
        """Commit handled offsets, leave the group and close the consumer; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        consumer = self._consumer
        if consumer is None:
            return
        try:
            self.commit(self.next_offsets())
            self._close_consumer(consumer)
        except Exception:  # closing must not fail shutdown
            self._log.exception("closing the kafka consumer failed")
        finally:
            self._consumer = None
            self._release()
