"""Bounded, downsampled time series of the stream loop (``GET /v1/history``, the dashboard).

The loop calls :meth:`History.record` once per read chunk (never per event). A point is
taken at the end of the first chunk at least ``every`` events after the previous point; when
``points`` are held, every other point is dropped and ``every`` doubles, so the series
always cover the whole run at a uniform spacing in events, in at most ``points`` points per
series (the usual "halving" downsampling of bounded traces). A chunk that adds no point
costs well under a microsecond, so tiny reads (HTTP requests of one event) stay cheap.

Drifts are tracked on every call: each new entry of the learner's drift log becomes a row
of :attr:`History.drifts` with its change point, and the last loss drift's row follows the
learner's recovery figures (:class:`streamcl.learning.recovery.Recovery`): the level before
the drift, the worst windowed accuracy after it, their difference -- the stability gap of
De Lange et al. 2023, "Continual evaluation for lifelong learning: identifying the
stability gap" (ICLR) -- and the events until accuracy is back within 0.02 of that level.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

    from streamcl.learning.drift import DriftRecord
    from streamcl.learning.learner import Learner
    from streamcl.metrics import Metrics
    from streamcl.stream.prequential import StreamLoop

__all__ = ["SERIES", "History"]

#: The fixed series of every point (see :meth:`History.record` for their meaning).
SERIES = (
    "time",
    "events",
    "scored",
    "version",
    "served_version",
    "score",
    "cumulative",
    "baseline",
    "baseline_cumulative",
    "kappa_temporal",
    "events_per_s",
    "memory_entries",
    "recent_entries",
    "replay_entries",
    "memory_bytes",
    "consumer_lag",
    "pending_labels",
    "rejected",
)

Number = float | int | None


def _finite(value: float | int | None) -> Number:
    """``value``, or None when it is missing or not finite (JSON has no NaN)."""
    if type(value) is float and not math.isfinite(value):
        return None
    return value


def _sum_samples(metric: Counter | Gauge, suffix: str = "") -> dict[str, float]:
    """Current value of each child of a one-label metric (``_total`` samples for counters)."""
    out: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix) and sample.labels:
                key = next(iter(sample.labels.values()))
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _memory_bytes(learner: Learner) -> int:
    """Bytes held by the learner's kNN memories, prototypes and replay buffer."""
    parts = (learner.knn, learner.recent, learner.prototypes)
    return learner.replay.nbytes + sum(p.nbytes for p in parts if p is not None)


class History:
    """Time series of one stream loop, bounded to ``points`` points per series.

    Parameters
    ----------
    points
        Most points kept per series, and most drifts kept (>= 2).
    every
        Events between points at the start (doubled at each downsampling).

    Attributes
    ----------
    series : dict[str, list]
        One list per name of :data:`SERIES`, all of the same length (at most ``points``):
        ``time`` epoch seconds; ``events`` events predicted; ``scored`` events scored;
        ``version`` learning steps of the learner; ``served_version`` version of the
        published snapshot; ``score`` windowed accuracy 0..1 (windowed MAE for regression,
        target units); ``cumulative`` the same since the start; ``baseline`` and
        ``baseline_cumulative`` the no-change predictor's (previous label) score;
        ``kappa_temporal`` over the window; ``events_per_s`` events predicted per second
        since the previous point; memory entries and bytes; ``consumer_lag`` records behind
        the high-water mark, summed over partitions; ``pending_labels``; ``rejected`` events.
        Missing values are None.
    weights : dict[str, list]
        Hedge weight of each predictor at each point.
    health : dict[str, list]
        Plasticity health at each point (``dormant_fraction_layer{i}``, ``effective_rank``,
        ``weight_magnitude``, ``grad_norm``; see :func:`streamcl.learning.plasticity.health`).
    drifts : deque of dict
        The last ``points`` drifts (see :meth:`_drift_row`).
    every : int
        Events between points now.
    """

    def __init__(self, points: int = 512, every: int = 128) -> None:
        if points < 2:
            raise ValueError(f"points must be >= 2, got {points}")
        self.points = points
        self._lock = threading.Lock()
        self.series: dict[str, list[Number]] = {name: [] for name in SERIES}
        self.weights: dict[str, list[Number]] = {}
        self.health: dict[str, list[Number]] = {}
        self.drifts: deque[dict[str, Any]] = deque(maxlen=points)
        self.every = max(every, 1)
        self._next_at = 0  # events at which the next point is due
        self.task = "classification"
        self.window = 0
        self._drifts_seen = 0
        self._open: dict[str, Any] | None = None  # the last loss drift, still recovering
        self._last: tuple[int, float] | None = None  # (events, monotonic s) at the last point
        self._metrics: Metrics | None = None
        self._drift_counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.series["events"])

    # -- recording (loop thread) -------------------------------------------------------------
    def record(self, loop: StreamLoop, force: bool = False) -> None:
        """Track drifts, and add a point if ``every`` events passed (or ``force``, if new).

        Called by the loop thread after each read chunk: under a microsecond without a new
        point, tens of microseconds with one.
        """
        with self._lock:
            self._metrics = loop.metrics
            self._track_drifts(loop.learner)
            events = loop.events_handled
            if events < self._next_at and not force:
                return
            if len(self) and self.series["events"][-1] == events:
                return  # that point is already the latest
            self._append(loop)
            self._next_at = events + self.every
            if len(self) >= self.points:
                self._downsample()

    def _append(self, loop: StreamLoop) -> None:
        learner, score, m = loop.learner, loop.score, loop.metrics
        now = time.monotonic()
        rate = None
        if self._last is not None and now > self._last[1]:
            rate = (loop.events_handled - self._last[0]) / (now - self._last[1])
        self._last = (loop.events_handled, now)
        self.task = "regression" if learner.regression else "classification"
        self.window = score.window
        memory = learner.knn, learner.recent
        lag = _sum_samples(m.consumer_lag)
        point: dict[str, Number] = {
            "time": time.time(),
            "events": loop.events_handled,
            "scored": score.n,
            "version": learner.version,
            "served_version": loop.snapshot.version,
            "score": score.window_mae if learner.regression else score.window_accuracy,  # type: ignore[union-attr]
            "cumulative": score.mae if learner.regression else score.accuracy,  # type: ignore[union-attr]
            "baseline": score.window_no_change,
            "baseline_cumulative": score.no_change,
            "kappa_temporal": score.window_kappa_temporal,
            "events_per_s": rate,
            "memory_entries": memory[0].size if memory[0] is not None else 0,
            "recent_entries": memory[1].size if memory[1] is not None else 0,
            "replay_entries": learner.replay.size,
            "memory_bytes": _memory_bytes(learner),
            "consumer_lag": sum(lag.values()) if lag else None,
            "pending_labels": len(loop.labels.store) if loop.labels is not None else None,
            "rejected": loop.rejected,
        }
        n = len(self)
        for name in SERIES:
            self.series[name].append(_finite(point[name]))
        self._append_keyed(self.weights, learner.weights(), n)
        self._append_keyed(self.health, learner.trainer.health, n)

    @staticmethod
    def _append_keyed(columns: dict[str, list[Number]], values: dict[str, float], n: int) -> None:
        """Append a dict of values as columns of length ``n + 1`` (None where absent)."""
        for key in values:
            if key not in columns:
                columns[key] = [None] * n
        for key, column in columns.items():
            column.append(_finite(values.get(key)))

    def _downsample(self) -> None:
        """Keep every other point (the first one included); ``every`` becomes their spacing.

        That is twice ``every`` or, where read chunks were longer, twice the chunk.
        """
        for column in (*self.series.values(), *self.weights.values(), *self.health.values()):
            del column[1::2]
        events = self.series["events"]
        first, last = int(events[0] or 0), int(events[-1] or 0)
        self.every = max(self.every * 2, round((last - first) / max(len(events) - 1, 1)))
        self._next_at = last + self.every

    def _track_drifts(self, learner: Learner) -> None:
        total = sum(learner.drift.counts.values())
        if total < self._drifts_seen:  # the learner was reset
            self._drifts_seen, self._open = 0, None
            self._drift_counts = {}
        new = total - self._drifts_seen
        if new > 0:
            log = list(learner.drift.log)
            for record in log[-new:] if new <= len(log) else log:
                row = self._drift_row(record)
                self.drifts.append(row)
                if record.detector == "loss":
                    self._open = row
            self._drifts_seen = total
        if new:
            self._drift_counts = dict(learner.drift.counts)
        if self._open is not None:
            r = learner.recovery
            row = self._open
            row["pre_drift_accuracy"] = _finite(r.pre_level)
            row["worst_accuracy"] = _finite(r.worst)
            row["recovery_events"] = r.recovery_events
            gap = None if r.pre_level is None or r.worst is None else r.pre_level - r.worst
            row["stability_gap"] = _finite(gap)
            if r.recovery_events is not None:
                self._open = None

    @staticmethod
    def _drift_row(record: DriftRecord) -> dict[str, Any]:
        """One drift: when, which detector, where the change started, and its recovery.

        ``change_point`` is the detector's own estimate of where the change started, as a
        stream offset: ADWIN keeps the ``window`` events it found to follow the change,
        so ``event - window``; the detection offset itself for detectors without a window.
        """
        return {
            "event": record.event,
            "time": record.time,
            "event_id": record.event_id,
            "detector": record.detector,
            "kind": record.kind,
            "statistic": _finite(record.statistic),
            "window": record.window,
            "change_point": max(record.event - record.window, 0),
            "pre_drift_accuracy": None,
            "worst_accuracy": None,
            "stability_gap": None,
            "recovery_events": None,
        }

    # -- reading (any thread) ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able copy of the history (the body of ``GET /v1/history``)."""
        with self._lock:
            series = {k: list(v) for k, v in self.series.items()}
            weights = {k: list(v) for k, v in self.weights.items()}
            health = {k: list(v) for k, v in self.health.items()}
            drifts = [dict(d) for d in self.drifts]
            metrics = self._metrics
            drift_counts = dict(self._drift_counts)
        totals: dict[str, dict[str, float]] = {"dead_letters": {}, "labels": {}}
        if metrics is not None:
            totals["dead_letters"] = _sum_samples(metrics.dead_letter, "_total")
            totals["labels"] = _sum_samples(metrics.labels, "_total")
        totals["drifts"] = {k: float(v) for k, v in drift_counts.items()}
        return {
            "available": True,
            "task": self.task,
            "metric": "mae" if self.task == "regression" else "accuracy",
            "window": self.window,
            "points": len(series["events"]),
            "max_points": self.points,
            "every_events": self.every,
            "series": series,
            "weights": weights,
            "health": health,
            "drifts": drifts,
            "totals": totals,
        }
