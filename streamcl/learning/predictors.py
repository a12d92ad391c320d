"""Every expert's output for a batch: the inputs of the Hedge mixture.

Step 2 of :meth:`streamcl.learning.learner.Learner.predict_learn`: the MLP, the long-term
and short-term kNN memories (Losing et al. 2016), the class prototypes, the linear, tree
and temporal experts, each when it is on and ready. The kNN votes and the temporal expert
use the labels of the batch's earlier events, known before each event is predicted
(:func:`streamcl.learning.neighbours.batch_neighbours`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from streamcl.learning.neighbours import batch_neighbours
from streamcl.learning.snapshot import softmax

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["predict_parts"]


def predict_parts(
    learner: Learner, x: np.ndarray, known: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Each predictor's output for ``x`` ``(batch, n_columns)`` float32, and kNN distances.

    Returns ``({name: (batch, n_classes) probabilities or (batch,) values}, (batch,)
    distances to the nearest stored row or None)``; empty before the first labelled event.
    ``known`` ``(batch,)``: the events' targets, NaN where unusable; the kNN votes then use
    the batch's earlier labelled events (:func:`~.neighbours.batch_neighbours`).
    """
    parts: dict[str, np.ndarray] = {}
    model, n = learner.trainer.model, len(learner.classes)
    if model is None:
        return parts, None
    out = learner.trainer.predict_raw(x)
    parts["mlp"] = learner.trainer.unscale(out[:, 0]) if learner.regression else softmax(out[:, :n])
    nearest = None
    if learner.knn is not None and learner.knn.size:
        keys = learner._keys(x)
        batch = _neighbours(learner, keys, known)
        parts["knn"], nearest = learner.knn.predict(keys, n, batch)
        if learner.recent is not None and learner.recent.size:
            parts["recent"], _ = learner.recent.predict(keys, n, batch)
    if learner.prototypes is not None and len(learner.prototypes.counts):
        parts["prototypes"] = learner.prototypes.predict(x, n)
    if learner.linear is not None and learner.linear.ready:
        parts["linear"] = learner.linear.predict(x, n)
    if learner.tree is not None and learner.tree.ready:
        parts["tree"] = learner.tree.predict(x, n)
    if learner.temporal is not None and learner.temporal.ready:
        parts["temporal"] = learner.temporal.predict(
            np.full(len(x), math.nan) if known is None else known, n
        )
    return parts, nearest


def _neighbours(
    learner: Learner, keys: np.ndarray, known: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`~.neighbours.batch_neighbours` of ``keys``, or None where they change no vote.

    They change none when no event but the last has a usable label (every extra distance
    is ``inf``) and each voting memory returns its ``k`` neighbours: the merge then keeps
    the memory's own (a 1-event step, an unlabelled batch), so the search is skipped.
    """
    if known is None:
        return None
    knn, recent = learner.knn, learner.recent
    assert knn is not None
    full = knn.size >= knn.k and (recent is None or not recent.size or recent.size >= recent.k)
    if full and np.logical_and.reduce(np.isnan(known[:-1])):  # True when empty
        return None
    return batch_neighbours(keys, known)
