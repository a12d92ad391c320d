"""One learning step on labelled rows: the optimiser step, then the memories' inserts.

Step 4 of :meth:`streamcl.learning.learner.Learner.predict_learn` (and of the delayed-label
path, :mod:`streamcl.learning.delayed`): one optimiser step on the rows mixed with rows
replayed from the reservoir (Chaudhry et al. 2019), then the rows go into the kNN memories,
the prototypes, the linear and tree experts and the replay buffer. New classes get their
index here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from streamcl.events import Label
from streamcl.learning.classes import register

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["learn_matrix"]


def learn_matrix(
    learner: Learner,
    x: np.ndarray,
    labels: Sequence[Label | float],
    times: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> float:
    """One optimiser step on features ``x`` and ``labels``, then memory insertion.

    Parameters
    ----------
    x
        ``(batch, n_columns)`` float32 from :attr:`.Learner.featurizer` (narrower matrices from
        before a column was added are zero-padded).
    labels
        ``batch`` class labels (classification) or numbers (regression).
    times
        ``(batch,)`` int64 stream offsets of the rows, which decide what a drift's
        memory trim forgets; all rows get :attr:`.Learner.events_seen` when None.
    classes
        ``(batch,)`` int64 class indices of ``labels`` (``-1``: a class not seen yet),
        if known already (classification).

    Returns
    -------
    float
        The batch's loss before the step (cross-entropy in nats, or the squared /
        absolute error of standardised targets); NaN if the step was skipped.
    """
    if len(labels) == 0:
        return 0.0
    x = np.ascontiguousarray(x, dtype=np.float32)
    if learner.regression:
        y = np.array(labels, dtype=np.float64)
        learner.trainer.observe_targets(y)
    elif classes is not None and len(classes) and np.minimum.reduce(classes) >= 0:
        y = classes.astype(np.float64)  # every class seen before
    else:
        y = register(learner, labels)  # type: ignore[arg-type]
    if learner.temporal is not None:
        learner.temporal.learn(y, len(learner.classes))
    width = max(x.shape[1], learner.featurizer.n_columns)
    rx, ry = learner.replay.sample(learner.settings.memory.replay, width)
    loss = learner.trainer.step(x, y, rx, ry, max(len(learner.classes), 1))
    t = np.full(len(x), learner.events_seen, np.int64) if times is None else np.asarray(times)
    if not np.isfinite(x).all():  # never let a non-finite row into the memories
        finite = np.isfinite(x).all(1)
        x, y, t = x[finite], y[finite], t[finite]
    if learner.knn is not None:
        keys = learner._keys(x)
        learner.knn.add(keys, y, t)
        if learner.recent is not None:
            learner.recent.add(keys, y, t)
    if learner.prototypes is not None:
        learner.prototypes.learn(x, y.astype(np.int64), len(learner.classes))
    if learner.linear is not None:
        learner.linear.learn(x, y.astype(np.int64), len(learner.classes))
    if learner.tree is not None:
        learner.tree.learn(x, y.astype(np.int64), len(learner.classes), t)
    learner.replay.add(x, y, t)
    learner.version += 1
    learner.events_learned += len(labels)
    return loss
