"""The prequential (test-then-train) stream loop and its running scores.

Every event is predicted with the model as it was before the event's micro-batch was
learned; the prediction is scored when the label is known (with the event, or later).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from streamcl.connectors.base import DeadLetterSink, LogDeadLetterSink, Record, Source
from streamcl.errors import DecodeError, QueueFullError
from streamcl.events import Event, EventDecoder
from streamcl.learning.learner import Learner, Prediction, Snapshot
from streamcl.metrics import Metrics
from streamcl.models.schema import kind_of, mismatch
from streamcl.stream.decode import BatchDecoder
from streamcl.stream.dedup import DedupWindow, IdLedger
from streamcl.stream.history import History
from streamcl.stream.labels import LabelJoin
from streamcl.stream.scores import PrequentialScore, RegressionScore, labelled

__all__ = ["PrequentialScore", "QueueFullError", "RegressionScore", "StreamLoop"]

log = logging.getLogger(__name__)


class StreamLoop:
    """Reads micro-batches from a source, predicts, scores, learns and publishes snapshots.

    The loop thread is the learner's only writer (see :mod:`streamcl.learning.learner`). Events
    posted over HTTP reach it through a bounded queue (:meth:`submit`).

    Parameters
    ----------
    source
        Where records come from, or None for HTTP ingestion only.
    learner
        The learner this loop owns.
    decoder
        Record -> :class:`~streamcl.events.Event`.
    metrics
        Metrics to update.
    batch_size
        Events per micro-batch (predicted with the same weights, then learned).
    read_size
        Most records read from the source per step (one poll), learned in micro-batches of
        ``batch_size``; larger reads amortise the source's per-call cost. The source position
        (and so a checkpoint) always falls between steps.
    window
        Sliding window of the prequential accuracy, events.
    dead_letters
        Where undecodable records go; logged when None.
    on_predictions
        Called with ``(records, events, predictions)`` after each batch is predicted
        (e.g. the Kafka predictions topic).
    max_queue
        Most HTTP requests waiting for the loop.
    dedup_window
        Recent event ids remembered; a repeated id is rejected (``duplicate_id``).
    history_points
        Most points per series of :attr:`history`.

    Attributes
    ----------
    history : History or None
        Downsampled time series for ``GET /v1/history`` (one point per read chunk at most);
        None for per-key models, whose series are per key.
    ledger : IdLedger
        Count and digest of the ids of learned events (checkpointed: exactly-once proof).
    hold : str or None
        While set, the loop reads nothing from the source; the reason is reported by
        ``/readyz`` (e.g. a regressed log under policy ``fail``).
    before_step, after_step : Callable[[], None] or None
        Hooks run on the loop thread around each step (checkpoint triggers, publication).
    before_learn : Callable[[Sequence[Event]], None] or None
        Called with each chunk of events before it is predicted and learned (the quality
        gate scores model versions on them).
    """

    def __init__(
        self,
        source: Source | None,
        learner: Learner,
        decoder: EventDecoder,
        metrics: Metrics,
        batch_size: int = 16,
        read_size: int = 512,
        window: int = 1_000,
        dead_letters: DeadLetterSink | None = None,
        on_predictions: Callable[[Sequence[Record], Sequence[Event], Sequence[Prediction]], None]
        | None = None,
        max_queue: int = 64,
        dedup_window: int = 100_000,
        history_points: int = 512,
    ) -> None:
        self.source = source
        self.learner = learner
        self.decoder = decoder
        self.metrics = metrics
        self.batch_size = batch_size
        self.read_size = max(read_size, batch_size)
        self.dead_letters = dead_letters if dead_letters is not None else LogDeadLetterSink()
        self.on_predictions = on_predictions
        #: Delayed-label join (set by the service when a labels topic is configured).
        self.labels: LabelJoin | None = None
        #: Model version (learning steps) that made the latest batch's predictions.
        self.predicted_version = learner.version
        self.score: PrequentialScore | RegressionScore = (
            RegressionScore(window) if learner.regression else PrequentialScore(window)
        )
        self.snapshot: Snapshot = learner.snapshot()
        self.heartbeat = time.monotonic()
        self.events_handled = 0
        self.rejected = 0
        self._inbox: queue.Queue[tuple[list[Event], Future[list[Prediction]]]] = queue.Queue(
            max_queue
        )
        self.dedup = DedupWindow(dedup_window)
        self.ledger = IdLedger()
        self.history: History | None = History(history_points)
        self.hold: str | None = None
        self.before_step: Callable[[], None] | None = None
        self.after_step: Callable[[], None] | None = None
        self.before_learn: Callable[[Sequence[Event]], None] | None = None
        self._calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue(max_queue)
        self._failures = 0
        self._batch: BatchDecoder | None = None

    # -- ingestion ---------------------------------------------------------------------------
    def submit(self, events: list[Event]) -> Future[list[Prediction]]:
        """Queue events (already decoded) to be predicted and learned by the loop thread.

        Raises
        ------
        QueueFullError
            When ``max_queue`` requests are already waiting.
        """
        future: Future[list[Prediction]] = Future()
        try:
            self._inbox.put_nowait((events, future))
        except queue.Full:
            raise QueueFullError("ingestion queue is full") from None
        return future

    def call_soon(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the loop thread before its next step (checkpoint now, reset).

        Raises
        ------
        QueueFullError
            When ``max_queue`` calls are already waiting.
        """
        future: Future[Any] = Future()
        try:
            self._calls.put_nowait((fn, future))
        except queue.Full:
            raise QueueFullError("control queue is full") from None
        return future

    def _run_calls(self) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as exc:  # the caller fails, never the loop
                    future.set_exception(exc)

    def _check_duplicates(self, events: Sequence[Event]) -> None:
        """Reject the whole request if an id repeats one in the window (nothing is added).

        Raises
        ------
        DecodeError
            ``duplicate_id`` naming ``events.<i>.id``.
        """
        seen: set[str] = set()
        for i, event in enumerate(events):
            if event.id in self.dedup or event.id in seen:
                raise DecodeError("duplicate_id", f"events.{i}.id", f"event id {event.id!r} seen")
            seen.add(event.id)
        for event in events:
            self.dedup.seen_or_add(event.id)

    def decode(self, records: Sequence[Record]) -> tuple[list[Record], list[Event]]:
        """Decode records (a chunk at a time, :mod:`.decode`); rejected ones are dead-lettered.

        Rejections are counted and sent to the dead-letter sink with their reason and field.
        """
        kept: list[Record] = []
        events: list[Event] = []
        kinds: dict[str, str] = {}
        # Feature names, value types and label type already checked in this read: an event of
        # the same shape passes both checks too (they only depend on the types; `kinds` only
        # grows, and no class is learned while a read is decoded).
        checked: set[tuple[tuple[str, ...], tuple[type, ...], type]] = set()
        if self._batch is None or self._batch.decoder is not self.decoder:
            self._batch = BatchDecoder(self.decoder)
        for record, event in zip(records, self._batch.decode(records), strict=True):
            try:
                if isinstance(event, DecodeError):
                    raise event
                features = event.features
                shape = (tuple(features), tuple(map(type, features.values())), type(event.label))
                if shape not in checked:
                    self.check_kinds(event, kinds)
                    checked.add(shape)
                if self.dedup.seen_or_add(event.id):
                    raise DecodeError("duplicate_id", "id", f"event id {event.id!r} seen recently")
            except DecodeError as exc:
                self.reject(record, exc)
                continue
            kept.append(record)
            events.append(event)
        return kept, events

    def check_kinds(self, event: Event, pending: dict[str, str], learner: Any = None) -> None:
        """Check that each feature keeps its kind (number or category), the label its type.

        Kinds are fixed when a feature is first learned; ``pending`` holds the kinds first
        seen earlier in the same read (or request), not learned yet, keyed by field
        (``features.<name>``, ``label``). A class label keeps the type (int or str) of the
        classes learned (:meth:`~streamcl.learning.learner.Learner.check_label`). ``learner``
        is the loop's unless given (a per-key model's).

        Raises
        ------
        DecodeError
            ``type_mismatch`` naming ``features.<name>`` or ``label``.
        """
        learner = learner if learner is not None else self.learner
        featurizer = learner.featurizer
        known, fresh = featurizer.kinds, []
        for name, value in event.features.items():  # the usual case in one pass: no mismatch
            kind = kind_of(value)
            expected = known.get(name) or pending.get(f"features.{name}")
            if expected is None:
                fresh.append((f"features.{name}", kind))
            elif expected != kind:
                break
        else:
            pending.update(fresh)
            learner.check_label(event.label, pending)
            return
        featurizer.check(event)  # a mismatch: name it as featurizer.check would, then pending
        for name, value in event.features.items():
            if name not in featurizer.kinds:
                kind = kind_of(value)
                if pending.setdefault(f"features.{name}", kind) != kind:
                    raise mismatch(name, pending[f"features.{name}"], value)
        learner.check_label(event.label, pending)

    def reject(self, record: Record, exc: DecodeError) -> None:
        """Count a rejected record and send it to the dead-letter sink."""
        self.rejected += 1
        self.metrics.events.labels("rejected").inc()
        self.metrics.rejected.labels(exc.reason).inc()
        self.metrics.dead_letter.labels(exc.reason).inc()
        self.dead_letters.send(record, exc.reason, exc.field, exc.detail, type(exc).__name__)

    # -- the loop ----------------------------------------------------------------------------
    def step(self, timeout_s: float = 0.05) -> int:
        """Handle one micro-batch from the source and pending HTTP requests.

        Returns
        -------
        int
            Number of events predicted in this step.
        """
        self.heartbeat = time.monotonic()
        self._run_calls()
        if self.before_step is not None:
            self.before_step()
        handled = self._drain_inbox()
        if self.source is not None and self.hold is None and not self.source.exhausted:
            records = self.source.read(self.read_size, timeout_s)
            if records:
                label_records: list[Record] = []
                if self.labels is not None:
                    records, label_records = self.labels.split(records)
                kept, events = self.decode(records)
                if events:
                    predictions = self._process_in_batches(events)
                    if self.on_predictions is not None:
                        self.on_predictions(kept, events, predictions)
                handled += len(events)
                if label_records:
                    handled += self.join_labels(label_records)
        if self.labels is not None:
            self.labels.tick()
        if handled and self.history is not None:
            self.history.record(self)
        return handled

    def join_labels(self, records: Sequence[Record]) -> int:
        """Join delayed label records with held events and learn them (see .labels)."""
        assert self.labels is not None
        handled = self.labels.join(records, self.reject)
        self.snapshot = self.learner.snapshot()
        return handled

    def _drain_inbox(self) -> int:
        handled = 0
        while True:
            try:
                events, future = self._inbox.get_nowait()
            except queue.Empty:
                return handled
            if future.set_running_or_notify_cancel():
                try:
                    self._check_duplicates(events)
                    future.set_result(self._process_in_batches(events))
                except DecodeError as exc:  # an expected client error (duplicate id)
                    log.info("posted events rejected: %s", exc)
                    future.set_exception(exc)
                except Exception as exc:  # the request fails, never the loop
                    log.exception("processing posted events failed")
                    future.set_exception(exc)
            handled += len(events)

    def _process_in_batches(self, events: Sequence[Event]) -> list[Prediction]:
        """Micro-batches of ``events`` in order; one snapshot published at the end.

        A read chunk (at most ``source.read_batch`` events) takes milliseconds, so serving
        lags learning by at most that, while publishing costs as much as a small step.
        """
        out: list[Prediction] = []
        if self.before_learn is not None and events:
            self.before_learn(events)
        for i in range(0, len(events), self.batch_size):
            out.extend(self.process(events[i : i + self.batch_size], publish=False))
        if events:
            self.snapshot = self.learner.snapshot()
        return out

    def process(self, events: Sequence[Event], publish: bool = True) -> list[Prediction]:
        """Predict, then learn, then score ``events``; publish the new snapshot if ``publish``."""
        started = time.perf_counter()
        self.predicted_version = self.learner.version
        held = self.labels.unlabelled(events) if self.labels is not None else []
        # The rows predict_learn is about to see (same featurizer state), kept for the join.
        rows = self.learner.featurizer.transform(events, learn=True) if held else None
        predictions = self.learner.predict_learn(events)
        if self.labels is not None and rows is not None:
            self.labels.hold(
                [events[i] for i in held],
                rows[held],
                [predictions[i] for i in held],
                self.learner.expert_outputs(held),
            )
        predicted, actual, ids = labelled(events, predictions)
        learned = len(ids)
        self.score.update_many(predicted, actual)
        self.ledger.add_many(ids)
        if publish:
            self.snapshot = self.learner.snapshot()
        self.events_handled += len(events)
        m = self.metrics
        m.events.labels("predicted").inc(len(events))
        m.learned.inc(learned)
        m.learn_duration.observe(time.perf_counter() - started)
        self.score.export(m)
        m.model_version.set(self.learner.version)
        self.learner.export_metrics(m)
        m.last_event.set(time.time())
        return predictions

    def run(self, stop: threading.Event, idle_sleep_s: float = 0.05) -> None:
        """Run :meth:`step` until ``stop`` is set; sleeps when there is nothing to do."""
        while not stop.is_set():
            try:
                handled = self.step()
                if self.after_step is not None:
                    self.after_step()
                self._failures = 0
                if handled == 0:
                    stop.wait(idle_sleep_s)
            except Exception:
                self._failures += 1
                log.exception("stream loop step failed (%d in a row); continuing", self._failures)
                stop.wait(min(idle_sleep_s * 2 ** min(self._failures, 10), 5.0))  # backoff

    def summary(self) -> dict[str, Any]:
        """Plain description of the loop for ``GET /v1/model``."""
        return {
            **self.learner.summary(),
            **self.score.summary(),
            "events_seen": self.events_handled,
            "events_rejected": self.rejected,
            "learned_ids": self.ledger.count,
            "learned_digest": self.ledger.digest,
        }
