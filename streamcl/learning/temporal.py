"""A temporal expert: the label of an event predicted from the label before it.

Many streams have autocorrelated labels (elec2's price direction, activity and sensor
streams): there "the same as last time" beats any model of the features (Zliobaite, I.
et al. 2015, Evaluation methods and decision theory for classification of streaming data
with temporal dependence, Machine Learning 98; Bifet, A. et al. 2013, Pitfalls in
benchmarking data stream classification and how to avoid them, ECML-PKDD). As an expert
in the Hedge mixture (:mod:`streamcl.learning.combination`), rather than a fixed input,
the autocorrelation gets weight only where it pays.

Classification: a Markov chain over the classes, ``P(y_t | y_{t-1})`` from exponentially
decayed transition counts with a symmetric Dirichlet prior, learned online; with strongly
autocorrelated labels it is the no-change classifier, and it also learns regular cycles.
Regression: the previous target (the no-change regressor).

"Previous" means the label received last, in stream order: inside a micro-batch, event
``i`` follows the labelled events before it (known before ``i`` is predicted), never its
own label.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["LabelTransitions"]

#: Batches up to this size count their transitions in a Python loop (np.add.at costs more).
_SCALAR_COUNTS = 8


class LabelTransitions:
    """Online transition model of the labels (see the module docstring).

    Parameters
    ----------
    regression
        Predict the previous value instead of class probabilities.
    decay
        Per labelled event, the weight kept by the past transition counts (0.999: an
        effective memory of ~1,000 events).
    prior
        Dirichlet pseudo-count of every transition.

    Attributes
    ----------
    counts : numpy.ndarray
        ``(n_classes, n_classes)`` float64 decayed counts, ``counts[previous, next]``.
    last : float
        The last label received: a class index or a value; NaN before any.
    """

    def __init__(self, regression: bool = False, decay: float = 0.999, prior: float = 0.5) -> None:
        self.regression = regression
        self.decay = decay
        self.prior = prior
        self._reset()

    def _reset(self) -> None:
        self.counts = np.zeros((0, 0))
        self.last = math.nan

    @property
    def ready(self) -> bool:
        """Whether a label was received (the expert has something to say)."""
        return not math.isnan(self.last)

    def previous(self, known: np.ndarray) -> np.ndarray:
        """The label before each event ``(batch,)`` float64 (NaN: none known).

        ``known`` ``(batch,)``: the events' targets, NaN where unknown at prediction time.
        """
        if len(known) == 1:  # a 1-event step: the label before it is the last one learned
            return np.array([self.last])
        before = np.concatenate([[self.last], known[:-1]])
        idx = np.where(np.isnan(before), 0, np.arange(len(before)))
        return before[np.maximum.accumulate(idx)]  # type: ignore[no-any-return]

    def predict(self, known: np.ndarray, n_classes: int) -> np.ndarray:
        """``(batch, n_classes)`` probabilities, or ``(batch,)`` previous values."""
        prev = self.previous(known)
        if self.regression:
            return np.where(np.isnan(prev), 0.0, prev)
        return self.proba(prev, n_classes)

    def proba(self, prev: np.ndarray, n_classes: int) -> np.ndarray:
        """``(len(prev), n_classes)`` float64 ``P(y | prev)``; uniform where prev is NaN."""
        k = min(len(self.counts), n_classes)
        if len(prev) == 1:  # a 1-event step: the one row, without the padded matrix
            picked = np.zeros((1, n_classes))
            last = float(prev[0])
            if last == last and int(last) < k:  # else uniform, as the padded zero rows
                picked[0, :k] = self.counts[int(last), :k]
            picked += self.prior
            return picked / np.add.reduce(picked, 1, keepdims=True)  # type: ignore[no-any-return]
        counts = np.zeros((n_classes + 1, n_classes))
        counts[:k, :k] = self.counts[:k, :k]
        rows = np.where(np.isnan(prev), n_classes, prev).astype(np.int64)  # row n: no counts
        rows[rows >= n_classes] = n_classes
        picked = counts[rows] + self.prior
        return picked / np.add.reduce(picked, 1, keepdims=True)  # type: ignore[no-any-return]

    def next_output(self, n_classes: int) -> np.ndarray:
        """The prediction for the next event: ``(n_classes,)`` probabilities or ``(1,)``."""
        if self.regression:
            return np.array([0.0 if math.isnan(self.last) else self.last])
        return np.asarray(self.proba(np.array([self.last]), n_classes)[0])

    def learn(self, y: np.ndarray, n_classes: int) -> None:
        """Learn the transitions of labels ``y`` ``(m,)`` received in this order."""
        if len(y) == 0:
            return
        if not self.regression:
            if len(self.counts) < n_classes:
                grown = np.zeros((n_classes, n_classes))
                k = len(self.counts)
                grown[:k, :k] = self.counts
                self.counts = grown
            self.counts *= self.decay ** len(y)
            if len(y) <= _SCALAR_COUNTS:  # the same additions, in order, without np.add.at
                counts, before = self.counts, self.last
                for label in y.tolist():
                    if before == before:  # not NaN: a label before it
                        counts[int(before), int(label)] += 1.0
                    before = label
            else:
                seq = np.concatenate([[self.last], y]).astype(np.float64)
                prev, nxt = seq[:-1], seq[1:]
                ok = ~np.isnan(prev)
                np.add.at(self.counts, (prev[ok].astype(np.int64), nxt[ok].astype(np.int64)), 1.0)
        self.last = float(y[-1])

    def state_dict(self) -> dict[str, Any]:
        """Plain state for checkpoints (arrays and floats)."""
        return {"counts": self.counts.copy(), "last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        counts = np.array(state["counts"], dtype=np.float64)
        self.counts = counts if counts.ndim == 2 else np.zeros((0, 0))
        self.last = float(state["last"])
