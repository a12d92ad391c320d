"""Prequential scores: classification (accuracy, kappa, kappa-temporal) and regression (MAE, RMSE).

Each score keeps a sliding window and a running total, exports itself to the metrics, and
has a plain-data ``state_dict`` so checkpoints restore it exactly.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any

from river import metrics as river_metrics

from streamcl.events import Event, Label
from streamcl.metrics import Metrics

if TYPE_CHECKING:
    from streamcl.models.predictor import Prediction

__all__ = ["PrequentialScore", "RegressionScore", "labelled"]


def labelled(
    events: Sequence[Event], predictions: Sequence[Prediction]
) -> tuple[Sequence[Label | None], Sequence[Label], Sequence[str]]:
    """Predictions, labels and ids of the labelled ``events``, in stream order."""
    scored = [
        (p.label, e.label, e.id)
        for e, p in zip(events, predictions, strict=True)
        if e.label is not None
    ]
    if not scored:
        return (), (), ()
    predicted, actual, ids = zip(*scored, strict=True)
    return predicted, actual, ids


class PrequentialScore:
    """Accuracy, Cohen's kappa and kappa-temporal of prequential predictions.

    Kappa-temporal compares against the no-change classifier (predict the previous label):
    ``(p - p_nc) / (1 - p_nc)`` (Bifet et al. 2013, "Pitfalls in benchmarking data stream
    classification and how to avoid them"). Values above 0 beat the no-change classifier.
    Cohen's kappa is river's :class:`river.metrics.CohenKappa`.

    Parameters
    ----------
    window
        Events in the sliding window for :attr:`window_accuracy`.
    """

    def __init__(self, window: int = 1_000) -> None:
        self.window = window
        self.n = 0
        self.correct = 0
        self.no_change_correct = 0
        self._recent: deque[tuple[bool, bool]] = deque(maxlen=window)
        self._recent_correct = 0
        self._recent_nc = 0
        self._previous: Label | None = None
        self.kappa_metric = river_metrics.CohenKappa()  # type: ignore[no-untyped-call]
        #: ``(events scored, windowed accuracy)`` every ``window`` events, for plots.
        self.history: list[tuple[int, float]] = []

    def update(self, predicted: Label | None, actual: Label) -> bool:
        """Score one prediction; returns whether it was correct."""
        return self.update_many((predicted,), (actual,)) == 1

    def update_many(self, predicted: Sequence[Label | None], actual: Sequence[Label]) -> int:
        """Score the predictions of consecutive events, in order; returns how many were right.

        The state :meth:`update` reaches event by event (the window, a :attr:`history` point
        at every multiple of ``window``, river's kappa counts in the same insertion order),
        with one pass over the batch and one kappa update per distinct (label, prediction).
        """
        n = len(actual)
        ok = [p == a for p, a in zip(predicted, actual, strict=True)]
        if n == 0:
            return 0
        previous = self._previous
        nc = [previous is not None and previous == actual[0]]
        nc += [b == a for b, a in pairwise(actual)]
        start = 0
        while start < n:  # segments ending at the next history point
            end = min(n, start + self.window - self.n % self.window)
            self._extend(ok[start:end], nc[start:end])
            if self.n % self.window == 0:
                self.history.append((self.n, self.window_accuracy))
            start = end
        self._previous = actual[-1]
        for (true, pred), count in Counter(zip(actual, predicted, strict=True)).items():
            self.kappa_metric.update(true, pred, float(count))
        return sum(ok)

    def _extend(self, ok: list[bool], nc: list[bool]) -> None:
        """Append at most ``window`` scored events to the window and the totals."""
        recent = self._recent
        drop = len(recent) + len(ok) - self.window
        if drop > 0:  # the oldest ``drop`` leave the window
            for old_ok, old_nc in islice(recent, drop):
                self._recent_correct -= old_ok
                self._recent_nc -= old_nc
        recent.extend(zip(ok, nc, strict=True))
        right, same = sum(ok), sum(nc)
        self._recent_correct += right
        self._recent_nc += same
        self.n += len(ok)
        self.correct += right
        self.no_change_correct += same

    @property
    def accuracy(self) -> float:
        """Accuracy since the start, 0..1 (0 before any score)."""
        return self.correct / self.n if self.n else 0.0

    @property
    def window_accuracy(self) -> float:
        """Accuracy over the last ``window`` scored events, 0..1."""
        return self._recent_correct / len(self._recent) if self._recent else 0.0

    @property
    def no_change(self) -> float:
        """Accuracy of the no-change classifier (the previous label) since the start, 0..1."""
        return self.no_change_correct / self.n if self.n else 0.0

    @property
    def window_no_change(self) -> float:
        """Accuracy of the no-change classifier over the sliding window, 0..1."""
        return self._recent_nc / len(self._recent) if self._recent else 0.0

    @property
    def kappa(self) -> float:
        """Cohen's kappa since the start."""
        return float(self.kappa_metric.get())  # type: ignore[no-untyped-call]

    @property
    def kappa_temporal(self) -> float:
        """Kappa-temporal since the start (0 when the no-change classifier is perfect)."""
        p_nc = self.no_change_correct / self.n if self.n else 0.0
        return (self.accuracy - p_nc) / (1.0 - p_nc) if p_nc < 1.0 else 0.0

    @property
    def window_kappa_temporal(self) -> float:
        """Kappa-temporal over the sliding window."""
        if not self._recent:
            return 0.0
        p = self._recent_correct / len(self._recent)
        p_nc = self._recent_nc / len(self._recent)
        return (p - p_nc) / (1.0 - p_nc) if p_nc < 1.0 else 0.0

    def summary(self) -> dict[str, float | int]:
        """Plain numbers for reports and ``GET /v1/model``."""
        return {
            "scored": self.n,
            "accuracy": self.accuracy,
            "window_accuracy": self.window_accuracy,
            "kappa": self.kappa,
            "kappa_temporal": self.kappa_temporal,
        }

    def export(self, m: Metrics) -> None:
        """Set the prequential gauges."""
        m.accuracy.set(self.window_accuracy)
        m.accuracy_total.set(self.accuracy)
        m.kappa_temporal.set(self.window_kappa_temporal)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (including river's kappa confusion matrix)."""
        cm = self.kappa_metric.cm
        return {
            "n": self.n,
            "correct": self.correct,
            "no_change_correct": self.no_change_correct,
            "recent": [list(r) for r in self._recent],
            "previous": self._previous,
            "history": [list(h) for h in self.history],
            "cells": [[t, p, w] for t, row in cm.data.items() for p, w in row.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.__init__(self.window)  # type: ignore[misc]
        self.n, self.correct = int(state["n"]), int(state["correct"])
        self.no_change_correct = int(state["no_change_correct"])
        for ok, nc in state["recent"][-self.window :]:
            self._recent.append((bool(ok), bool(nc)))
        self._recent_correct = sum(ok for ok, _ in self._recent)
        self._recent_nc = sum(nc for _, nc in self._recent)
        self._previous = state["previous"]
        self.history = [(int(n), float(a)) for n, a in state["history"]]
        for t, p, w in state["cells"]:
            self.kappa_metric.cm.update(t, p, w)


class RegressionScore:
    """Mean absolute and root mean squared error of prequential regression predictions.

    A missing prediction (no model yet) counts as predicting 0. Accuracy-style attributes
    are NaN, so dashboards never show a made-up accuracy for a regression stream.

    Parameters
    ----------
    window
        Events in the sliding window for :attr:`window_mae`.
    """

    def __init__(self, window: int = 1_000) -> None:
        self.window = window
        self.n = 0
        self.abs_sum = 0.0
        self.sq_sum = 0.0
        self._recent: deque[float] = deque(maxlen=window)
        self._recent_sum = 0.0
        self.nc_abs_sum = 0.0  # no-change predictor (the previous target)
        self._recent_nc: deque[float] = deque(maxlen=window)
        self._recent_nc_sum = 0.0
        self._previous: float | None = None
        #: ``(events scored, windowed MAE)`` every ``window`` events, for plots.
        self.history: list[tuple[int, float]] = []

    def update(self, predicted: Label | None, actual: Label) -> bool:
        """Score one prediction (target units); returns whether the error was 0."""
        err = abs(float(actual) - float(predicted or 0.0))  # type: ignore[arg-type]
        if len(self._recent) == self.window:
            self._recent_sum -= self._recent[0]
        self._recent.append(err)
        self._recent_sum += err
        value = float(actual)  # type: ignore[arg-type]
        nc = abs(value - (self._previous or 0.0))  # no-change: the previous target (first: 0)
        if len(self._recent_nc) == self.window:
            self._recent_nc_sum -= self._recent_nc[0]
        self._recent_nc.append(nc)
        self._recent_nc_sum += nc
        self.nc_abs_sum += nc
        self._previous = value
        self.n += 1
        self.abs_sum += err
        self.sq_sum += err * err
        if self.n % self.window == 0:
            self.history.append((self.n, self.window_mae))
        return err == 0.0

    def update_many(self, predicted: Sequence[Label | None], actual: Sequence[Label]) -> int:
        """:meth:`update` for each event in order; returns how many errors were 0."""
        return sum(self.update(p, a) for p, a in zip(predicted, actual, strict=True))

    @property
    def mae(self) -> float:
        """Mean absolute error since the start, target units."""
        return self.abs_sum / self.n if self.n else 0.0

    @property
    def rmse(self) -> float:
        """Root mean squared error since the start, target units."""
        return math.sqrt(self.sq_sum / self.n) if self.n else 0.0

    @property
    def window_mae(self) -> float:
        """Mean absolute error over the last ``window`` events, target units."""
        return self._recent_sum / len(self._recent) if self._recent else 0.0

    @property
    def no_change(self) -> float:
        """MAE of the no-change predictor (the previous target) since the start."""
        return self.nc_abs_sum / self.n if self.n else 0.0

    @property
    def window_no_change(self) -> float:
        """MAE of the no-change predictor over the sliding window, target units."""
        return self._recent_nc_sum / len(self._recent_nc) if self._recent_nc else 0.0

    accuracy = window_accuracy = window_kappa_temporal = property(lambda self: math.nan)

    def summary(self) -> dict[str, float | int]:
        """Plain numbers for reports and ``GET /v1/model``."""
        return {"scored": self.n, "mae": self.mae, "rmse": self.rmse, "window_mae": self.window_mae}

    def export(self, m: Metrics) -> None:
        """Set the prequential gauges (accuracy gauges stay NaN)."""
        m.mae.set(self.window_mae)
        m.accuracy.set(math.nan)
        m.accuracy_total.set(math.nan)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {
            "n": self.n,
            "abs_sum": self.abs_sum,
            "sq_sum": self.sq_sum,
            "recent": list(self._recent),
            "history": [list(h) for h in self.history],
            "nc_abs_sum": self.nc_abs_sum,
            "recent_nc": list(self._recent_nc),
            "previous": self._previous,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.__init__(self.window)  # type: ignore[misc]
        self.n = int(state["n"])
        self.abs_sum, self.sq_sum = float(state["abs_sum"]), float(state["sq_sum"])
        self._recent.extend(float(e) for e in state["recent"][-self.window :])
        self._recent_sum = sum(self._recent)
        self.history = [(int(n), float(e)) for n, e in state["history"]]
        # checkpoints written before the no-change baseline have none: it restarts
        self.nc_abs_sum = float(state.get("nc_abs_sum", 0.0))
        self._recent_nc.extend(float(e) for e in state.get("recent_nc", [])[-self.window :])
        self._recent_nc_sum = sum(self._recent_nc)
        previous = state.get("previous")
        self._previous = None if previous is None else float(previous)
