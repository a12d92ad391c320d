"""Delayed labels: predicted events wait in a bounded store until their label arrives.

An event without a label is predicted on arrival (the prediction is what prequential
accuracy scores) and held as the float32 feature row the learner saw, keyed by its id.
A label record ``{"id": ..., "label": ...}`` later joins it: the row is learned with the
label and the event-time prediction is scored. Labels and events travel on different
topics, so a label may also arrive *before* its event (a consumer catching up reads the
topics at different speeds); such early labels wait in a second bounded buffer and join
the event as soon as it is predicted.

Both sides are bounded by ``max_size`` (oldest dropped first) and by ``ttl_s``; dropped
events count as ``expired``, labels that never found their event as ``unmatched``.
Nothing here imports Kafka: :class:`LabelJoin` is fed records by the stream loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from streamcl.connectors.base import Record
from streamcl.errors import DecodeError
from streamcl.events import Event, Label, loads_strict
from streamcl.learning.delayed import ExpertOutputs, outputs_from_state, outputs_state

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner, Prediction
    from streamcl.metrics import Metrics
    from streamcl.stream.scores import PrequentialScore, RegressionScore

__all__ = ["LabelJoin", "LabelRecord", "Pending", "PendingLabels", "decode_label"]


class LabelRecord(BaseModel):
    """A delayed label: ``{"id": str, "label": int | str}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: StrictStr = Field(min_length=1, max_length=256)
    label: StrictInt | StrictStr


def decode_label(raw: bytes | str, max_bytes: int = 65_536) -> LabelRecord:
    """Decode one label record (JSON object with ``id`` and ``label``).

    Raises
    ------
    DecodeError
        Every reason of :func:`streamcl.events.loads_strict`, ``not_object``,
        ``missing_field``, ``extra_field`` or ``bad_type`` (naming the field).
    """
    obj = loads_strict(raw, max_bytes)
    if not isinstance(obj, dict):
        raise DecodeError("not_object", "", f"expected a JSON object, got {type(obj).__name__}")
    try:
        return LabelRecord.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        reason = {"missing": "missing_field", "extra_forbidden": "extra_field"}.get(
            err["type"], "bad_type"
        )
        raise DecodeError(reason, field, str(err["msg"])) from None


@dataclass(frozen=True)
class Pending:
    """A predicted event waiting for its label.

    Attributes
    ----------
    row : numpy.ndarray
        ``(n_columns,)`` float32: the features the learner saw (width at event time).
    predicted : int, str or None
        The label predicted at event time.
    held_at : float
        When it was held, epoch seconds.
    experts : tuple or None
        Each expert's output at event time (:data:`~streamcl.learning.delayed.ExpertOutputs`:
        names and ``(n_experts, n_classes)`` float32), which the Hedge weights learn from
        on join; None when the learner was not ready.
    """

    row: np.ndarray
    predicted: Label | None
    held_at: float
    experts: ExpertOutputs | None = None


class PendingLabels:
    """Bounded, TTL-limited join of predicted events and their delayed labels.

    Parameters
    ----------
    max_size
        Most events waiting (and, separately, most early labels waiting).
    ttl_s
        Seconds an event or an early label waits before it is dropped.
    clock
        Wall clock, epoch seconds (injectable for tests); wall time so a restored
        checkpoint keeps the deadlines.

    Attributes
    ----------
    joined, expired, unmatched : int
        Events matched with a label; events dropped unmatched (TTL or size); labels
        dropped without finding their event (TTL, size, or a duplicate).
    """

    def __init__(
        self,
        max_size: int = 100_000,
        ttl_s: float = 3_600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_size = max_size
        self.ttl_s = ttl_s
        self.clock = clock
        self._reset()

    def _reset(self) -> None:
        self.events: OrderedDict[str, Pending] = OrderedDict()
        self.early: OrderedDict[str, tuple[Label, float]] = OrderedDict()
        self.joined = 0
        self.expired = 0
        self.unmatched = 0

    def __len__(self) -> int:
        return len(self.events)

    def hold(
        self,
        event_id: str,
        row: np.ndarray,
        predicted: Label | None,
        experts: ExpertOutputs | None = None,
    ) -> Label | None:
        """Hold a predicted event; returns its label if that label already arrived."""
        now = self.clock()
        self.expire(now)
        early = self.early.pop(event_id, None)
        if early is not None:
            self.joined += 1
            return early[0]
        if event_id in self.events:  # a repeated id replaces the older event
            del self.events[event_id]
            self.expired += 1
        self.events[event_id] = Pending(np.asarray(row, dtype=np.float32), predicted, now, experts)
        while len(self.events) > self.max_size:
            self.events.popitem(last=False)
            self.expired += 1
        return None

    def match(self, event_id: str, label: Label) -> Pending | None:
        """The waiting event of ``event_id`` (removed), or None (the label waits instead)."""
        now = self.clock()
        self.expire(now)
        pending = self.events.pop(event_id, None)
        if pending is not None:
            self.joined += 1
            return pending
        if event_id in self.early:
            self.unmatched += 1  # the older duplicate never joins
            del self.early[event_id]
        self.early[event_id] = (label, now)
        while len(self.early) > self.max_size:
            self.early.popitem(last=False)
            self.unmatched += 1
        return None

    def expire(self, now: float | None = None) -> None:
        """Drop events and early labels older than ``ttl_s`` (oldest first)."""
        limit = (self.clock() if now is None else now) - self.ttl_s
        while self.events and next(iter(self.events.values())).held_at < limit:
            self.events.popitem(last=False)
            self.expired += 1
        while self.early and next(iter(self.early.values()))[1] < limit:
            self.early.popitem(last=False)
            self.unmatched += 1

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (rows as lists of floats), for checkpoints."""
        return {
            "events": [
                [i, p.row.tolist(), p.predicted, p.held_at, outputs_state(p.experts)]
                for i, p in self.events.items()
            ],
            "early": [[i, label, t] for i, (label, t) in self.early.items()],
            "joined": self.joined,
            "expired": self.expired,
            "unmatched": self.unmatched,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (order, rows and deadlines kept)."""
        self._reset()
        for event_id, row, predicted, held_at, *experts in state["events"]:
            self.events[str(event_id)] = Pending(  # experts: absent in older checkpoints
                np.asarray(row, dtype=np.float32),
                predicted,
                float(held_at),
                outputs_from_state(experts[0] if experts else None),
            )
        for event_id, label, t in state["early"]:
            self.early[str(event_id)] = (label, float(t))
        self.joined = int(state["joined"])
        self.expired = int(state["expired"])
        self.unmatched = int(state["unmatched"])


#: ``(id, row, predicted, label, delay seconds, expert outputs)`` of a joined event.
_Match = tuple[str, np.ndarray, Label | None, Label, float, ExpertOutputs | None]


class LabelJoin:
    """The stream loop's side of delayed labels: hold unlabelled events, learn on join.

    Parameters
    ----------
    store
        The pending store.
    topic
        Records from this topic are labels; every other record is an event.
    learner, score, metrics
        What a join trains, scores and counts (owned by the loop thread).
    batch_size
        Joined rows are learned in micro-batches of this many.
    max_payload_bytes
        Largest label record accepted, bytes.
    on_learned
        Called with the ids learned by a join (e.g. the loop's id ledger).

    Attributes
    ----------
    before_learn : Callable[[list[str], list[Label]], None] or None
        Called with the ids and labels of each joined micro-batch before the learner learns
        it (the quality gate scores its candidates there,
        :meth:`~streamcl.stream.publish.Publisher.observe_joined`).
    """

    def __init__(
        self,
        store: PendingLabels,
        topic: str,
        learner: Learner,
        score: PrequentialScore | RegressionScore,
        metrics: Metrics,
        batch_size: int = 16,
        max_payload_bytes: int = 65_536,
        on_learned: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.topic = topic
        self.learner = learner
        self.score = score
        self.metrics = metrics
        self.batch_size = batch_size
        self.max_payload_bytes = max_payload_bytes
        self.on_learned = on_learned
        self.before_learn: Callable[[list[str], list[Label]], None] | None = None
        self._counted = {"joined": 0, "expired": 0, "unmatched": 0}

    def split(self, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """``(event records, label records)``, each in arrival order."""
        events = [r for r in records if r.topic != self.topic]
        if len(events) == len(records):
            return events, []
        return events, [r for r in records if r.topic == self.topic]

    @staticmethod
    def unlabelled(events: Sequence[Event]) -> list[int]:
        """Indices of the events that came without a label."""
        return [i for i, e in enumerate(events) if e.label is None]

    def hold(
        self,
        events: Sequence[Event],
        rows: np.ndarray,
        predictions: Sequence[Prediction],
        experts: Sequence[ExpertOutputs | None] | None = None,
    ) -> int:
        """Hold unlabelled ``events`` (``rows``: ``(len(events), n_columns)`` float32).

        ``experts``: each event's expert outputs (``Learner.expert_outputs``), kept for the
        Hedge update on join. Events whose label came early are learned at once. Returns
        how many were learned.
        """
        outputs = [None] * len(events) if experts is None else experts
        matched: list[_Match] = []
        for event, row, prediction, out in zip(events, rows, predictions, outputs, strict=True):
            label = self.store.hold(event.id, row.copy(), prediction.label, out)
            if label is not None:
                matched.append((event.id, row, prediction.label, label, 0.0, out))
        self._learn(matched)
        self._export()
        return len(matched)

    def join(self, records: Sequence[Record], reject: Callable[[Record, DecodeError], None]) -> int:
        """Decode label records, learn the events they complete; bad ones go to ``reject``.

        Returns
        -------
        int
            Label records handled (joined, waiting or rejected).
        """
        now = self.store.clock()
        matched: list[_Match] = []
        for record in records:
            try:
                if not isinstance(record.value, bytes):
                    raise DecodeError("bad_type", "", "a label record must be JSON bytes")
                label = decode_label(record.value, self.max_payload_bytes)
                self.learner.check_label(label.label)
            except DecodeError as exc:
                reject(record, exc)
                continue
            pending = self.store.match(label.id, label.label)
            if pending is not None:
                delay = max(0.0, now - pending.held_at)
                matched.append(
                    (label.id, pending.row, pending.predicted, label.label, delay, pending.experts)
                )
        self._learn(matched)
        self._export()
        return len(records)

    def tick(self) -> None:
        """Expire old entries and refresh the metrics (call between steps)."""
        self.store.expire()
        self._export()

    def _learn(self, matched: list[_Match]) -> None:
        if not matched:
            return
        width = max(self.learner.featurizer.n_columns, max(len(m[1]) for m in matched))
        m = self.metrics
        for start in range(0, len(matched), self.batch_size):
            chunk = matched[start : start + self.batch_size]
            x = np.zeros((len(chunk), width), dtype=np.float32)
            for i, (_, row, *_rest) in enumerate(chunk):
                x[i, : len(row)] = row
            if self.before_learn is not None:
                self.before_learn([c[0] for c in chunk], [c[3] for c in chunk])
            self.learner.learn_delayed(
                x,
                [c[3] for c in chunk],
                [c[2] for c in chunk],
                [c[0] for c in chunk],
                [c[5] for c in chunk],
            )
            self.score.update_many([c[2] for c in chunk], [c[3] for c in chunk])
            for c in chunk:
                m.label_join_delay.observe(c[4])
            if self.on_learned is not None:
                self.on_learned([c[0] for c in chunk])
        m.learned.inc(len(matched))
        self.score.export(m)
        m.model_version.set(self.learner.version)

    def _export(self) -> None:
        s = self.store
        self.metrics.pending_labels.set(len(s))
        for outcome, value in (
            ("joined", s.joined),
            ("expired", s.expired),
            ("unmatched", s.unmatched),
        ):
            delta = value - self._counted[outcome]
            if delta > 0:
                self.metrics.labels.labels(outcome).inc(delta)
                self._counted[outcome] = value
