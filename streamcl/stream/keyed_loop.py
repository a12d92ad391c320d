"""The prequential loop over per-key models, and their per-partition checkpoints.

:class:`KeyedLoop` is the :class:`~streamcl.stream.prequential.StreamLoop` with one change:
each read's events are routed by ``(partition, model key)`` to that key's model
(:class:`~streamcl.stream.keyed.KeyedLearner`) and learned in micro-batches of that key's
events, in their order. Each key's model therefore sees exactly its own stream, as a
process learning that key alone would.

:class:`KeyedCheckpoints` ties the per-partition checkpoints to the consumer group:

- every ``every_events`` records or ``every_seconds``: the dirty models of each owned
  partition, then its manifest with its next offset, then the Kafka commit (progress);
- on assignment (before anything is fetched): read the partition's manifest and seek to
  its offset (offset 0 for a partition never checkpointed: its keys learned nothing);
- on revocation: checkpoint the partition, let the source commit, release its models;
- on loss (forced eviction): release its models, write and commit nothing.

Exactly-once per key follows from the manifest alone: whoever owns a partition resumes
from the offset that was saved together with the models, so an event is in a model's
state if and only if it is before the partition's checkpointed offset (plus the events the
live owner learned since, which die with it if it crashes and are then read again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from streamcl.connectors.base import Record
from streamcl.errors import DecodeError
from streamcl.events import Event, EventDecoder
from streamcl.learning.learner import Prediction
from streamcl.metrics import Metrics
from streamcl.stream.keyed import KeyedLearner, KeyModel
from streamcl.stream.prequential import StreamLoop
from streamcl.stream.scores import labelled

__all__ = ["KeyedCheckpoints", "KeyedLoop"]

log = logging.getLogger(__name__)

#: ``(partition, model key)``
Route = tuple[str, str]


class KeyedLoop(StreamLoop):
    """A stream loop whose events are learned by their key's own model.

    Parameters
    ----------
    source, decoder, metrics, batch_size, read_size, window, dead_letters, on_predictions
        As for :class:`~streamcl.stream.prequential.StreamLoop`.
    keyed
        The per-key models.
    key_field
        Feature holding the model key; None: the Kafka record key (UTF-8).

    Notes
    -----
    A repeated event id is rejected (``duplicate_id``) within each key's window of recent
    ids (``events.key_dedup_window``), which is saved with the key's model and so moves
    with its partition; exactly-once through crashes comes from the per-partition offsets.
    """

    def __init__(
        self,
        source: Any,
        keyed: KeyedLearner,
        decoder: EventDecoder,
        metrics: Metrics,
        key_field: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(source, keyed, decoder, metrics, dedup_window=0, **kwargs)  # type: ignore[arg-type]
        self.history = None  # one model's series; per key there is no single one
        self.keyed = keyed
        self.key_field = key_field
        self._routes: list[Route] = []

    def submit(self, events: list[Event]) -> Future[list[Prediction]]:
        """Refused: per-key models learn from Kafka only (the partition decides the owner).

        Raises
        ------
        DecodeError
            ``unsupported``, always.
        """
        raise DecodeError(
            "unsupported", "events", "learner.partitioning: key learns from Kafka records only"
        )

    def model_key(self, record: Record, event: Event) -> str:
        """The model key of ``event``: its ``key_field`` feature or the record key.

        Raises
        ------
        DecodeError
            ``missing_key`` when the event has none.
        """
        if self.key_field is not None:
            value = event.features.get(self.key_field)
            if value is None:
                raise DecodeError(
                    "missing_key", f"features.{self.key_field}", "learner.key_field is missing"
                )
            return str(value)
        if not record.key:
            raise DecodeError("missing_key", "key", "partitioning: key needs a Kafka record key")
        return str(record.key.decode("utf-8", errors="replace"))

    def decode(self, records: Sequence[Record]) -> tuple[list[Record], list[Event]]:
        """Decode records and route each to its key's model (loaded or created here)."""
        kept: list[Record] = []
        events: list[Event] = []
        routes: list[Route] = []
        pending: dict[Route, dict[str, str]] = {}
        for record in records:
            try:
                if isinstance(record.value, bytes):
                    event = self.decoder.decode_json(record.value)
                else:
                    event = self.decoder.decode_row(record.value, record.offset)
                route = (f"{record.topic}:{record.partition}", self.model_key(record, event))
                model = self.keyed.model(*route)
                self.check_kinds(event, pending.setdefault(route, {}), model.learner)
                if model.dedup.seen_or_add(event.id):
                    raise DecodeError("duplicate_id", "id", f"event id {event.id!r} seen recently")
            except DecodeError as exc:
                self.reject(record, exc)
                continue
            kept.append(record)
            events.append(event)
            routes.append(route)
        self._routes = routes
        return kept, events

    def _process_in_batches(self, events: Sequence[Event]) -> list[Prediction]:
        """Each key's events, in order, in micro-batches of ``batch_size`` to its model."""
        groups: dict[Route, list[int]] = {}
        for i, route in enumerate(self._routes):
            groups.setdefault(route, []).append(i)
        out: list[Prediction | None] = [None] * len(events)
        for route, index in groups.items():
            model = self.keyed.model(*route)
            for j in range(0, len(index), self.batch_size):
                chunk = index[j : j + self.batch_size]
                predictions = self.learn_key(model, [events[i] for i in chunk])
                for i, p in zip(chunk, predictions, strict=True):
                    out[i] = p
        m = self.metrics  # once per read, not per key's micro-batch
        self.score.export(m)
        self.keyed.export_metrics(m)
        m.last_event.set(time.time())
        return [p for p in out if p is not None]

    def learn_key(self, model: KeyModel, events: Sequence[Event]) -> list[Prediction]:
        """Predict, then learn, then score one micro-batch of one key's events."""
        started = time.perf_counter()
        predictions = model.learner.predict_learn(events)
        predicted, actual, ids = labelled(events, predictions)
        learned = len(ids)
        for score, ledger in ((model.score, model.ledger), (self.score, self.ledger)):
            score.update_many(predicted, actual)
            ledger.add_many(ids)
        model.dirty = True
        self.keyed.steps += 1
        self.events_handled += len(events)
        m = self.metrics
        m.events.labels("predicted").inc(len(events))
        m.events.labels("learned").inc(learned)
        m.learn_duration.observe(time.perf_counter() - started)
        return predictions

    def summary(self) -> dict[str, Any]:
        """Instance summary: live models, owned partitions, events learned since start."""
        return {
            **self.keyed.summary(),
            **self.score.summary(),
            "events_seen": self.events_handled,
            "events_rejected": self.rejected,
            "learned_ids": self.ledger.count,
            "learned_digest": self.ledger.digest,
        }


class KeyedCheckpoints:
    """Per-partition checkpoints of a :class:`KeyedLoop`, driven by its steps and rebalances.

    Parameters
    ----------
    loop
        The keyed loop (its source is a consumer-group
        :class:`~streamcl.connectors.kafka.KafkaSource`).
    every_events
        Checkpoint every owned partition after this many records handled since the last.
    every_seconds
        ... or after this long, seconds, whichever comes first (only if something changed).
    """

    def __init__(self, loop: KeyedLoop, every_events: int, every_seconds: float) -> None:
        self.loop = loop
        self.keyed = loop.keyed
        source: Any = loop.source
        self.source = source
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.last_seconds: float | None = None
        self.source.on_assigned = self.on_assigned
        self.source.on_revoked = self.on_revoked
        self.source.on_lost = self.on_lost
        #: Called with the models a checkpoint saved and the offsets (per-key publishing).
        self.on_saved: Callable[[list[KeyModel], Mapping[str, int]], None] | None = None
        self._mark()

    def _handled(self) -> int:
        return int(self.loop.events_handled + self.loop.rejected)

    def _mark(self) -> None:
        self._since_handled = self._handled()
        self._since_time = time.monotonic()

    def after_step(self) -> None:
        """Checkpoint when due (the loop calls this between steps)."""
        n = self._handled() - self._since_handled
        if n >= self.every_events or (
            n > 0 and time.monotonic() - self._since_time >= self.every_seconds
        ):
            self.checkpoint("periodic")

    def _save(self, offsets: Mapping[str, int], fenced: bool = True) -> bool:
        started = time.perf_counter()
        try:
            self.loop.dead_letters.flush()
            saved = self.keyed.checkpoint(offsets, fenced)
        except Exception:
            log.exception("per-partition checkpoint failed; the previous ones stay")
            self.loop.metrics.checkpoint_failures.inc()
            return False
        self.last_seconds = time.perf_counter() - started
        self.loop.metrics.checkpoints.inc()
        self.loop.metrics.checkpoint_duration.observe(self.last_seconds)
        if self.on_saved is not None and saved:
            self.on_saved(saved, offsets)
        return True

    def checkpoint(self, reason: str = "periodic") -> bool:
        """Checkpoint every owned partition at its next offset, then commit (progress only)."""
        offsets = {
            p: o for p, o in self.source.next_offsets().items() if p in self.keyed.store.owned
        }
        saved = self._save(offsets)
        self._mark()
        if saved and offsets:
            log.debug("checkpoint (%s) of %s", reason, offsets)
            self.source.commit(offsets)
        return saved

    # -- rebalance callbacks (kafka-python's IO thread; the loop thread waits in poll) -------
    def on_assigned(self, partitions: list[str]) -> dict[str, int]:
        """Restore each newly assigned partition's manifest; where to resume each."""
        targets: dict[str, int] = {}
        for partition in partitions:
            if partition in self.keyed.store.owned:
                continue  # kept through a cooperative rebalance: nothing to restore
            try:
                offset = self.keyed.store.acquire(partition)
            except Exception as exc:
                message = f"cannot restore partition {partition}: {exc}"
                log.error(message)
                self.loop.hold = message  # not ready, consume nothing: never learn twice
                continue
            targets[partition] = 0 if offset is None else offset
        return targets

    def on_revoked(self, partitions: list[str]) -> None:
        """Checkpoint the revoked partitions, then release their models (the source commits)."""
        mine = [p for p in partitions if p in self.keyed.store.owned]
        offsets = {p: o for p, o in self.source.next_offsets().items() if p in mine}
        self._save(offsets, fenced=False)
        self.keyed.release(mine)

    def on_lost(self, partitions: list[str]) -> None:
        """Drop the lost partitions' models unsaved: their new owner restores the manifest."""
        self.keyed.release(partitions)
