"""Scoring a micro-batch: errors, drift detection, the Hedge update and recovery metrics.

Step 3 of :meth:`streamcl.learning.learner.Learner.predict_learn`: once the batch is
predicted, each labelled event's error feeds the drift detectors
(:mod:`streamcl.learning.drift`), each expert's own loss
(:func:`~streamcl.learning.combination.predictor_losses`, the ``hedge_loss`` setting) its
discounted Hedge loss (Freund & Schapire 1997; Cesa-Bianchi & Lugosi 2006), and the
combined prediction's correctness the recovery metrics. An expert with nothing to say yet
(the tree before its first fit, a kNN memory emptied by a drift) is a sleeping expert
(Freund, Schapire, Singer & Warmuth 1997, "Using and combining predictors that
specialize", STOC): it pays the mixture's own loss, so it wakes up on a par with the
mixture instead of ahead of every expert that paid for each event. A loss drift ends the
batch at the detecting event; a drift's actions are
:func:`~streamcl.learning.adaptation.on_drift`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from streamcl.events import Event
from streamcl.learning.adaptation import on_drift
from streamcl.learning.combination import MIXTURE, fixed_share, hedge_losses_rows

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["errors", "score"]


def errors(learner: Learner, predicted: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-event error and correctness of ``predicted`` against ``y`` (both ``(m,)``).

    Classification: class indices (``-1``: a class not seen yet, never correct), 0/1
    errors. Regression: values; absolute error in target standard deviations, correct
    under 0.5. Returns ``(errors float64, correct bool)``.
    """
    if learner.regression:
        error = np.abs(predicted - y) / learner.trainer.target_std()
        return error, error < 0.5
    correct = (y >= 0) & (predicted == y)
    return (~correct).astype(np.float64), correct


def score(
    learner: Learner,
    combined: np.ndarray,
    rows: list[int],
    y: np.ndarray,
    losses: dict[str, np.ndarray],
    events: Sequence[Event],
    nearest: np.ndarray | None,
) -> tuple[int, int | None]:
    """Drift detection, Hedge update and recovery metrics on the labelled ``rows``.

    Parameters
    ----------
    combined
        ``(batch, n_classes)`` mixture probabilities or ``(batch,)`` values.
    rows, y
        Indices of the labelled events and their targets (class indices or values).
    losses
        Each expert's ``(len(rows),)`` float64 loss on them.
    events, nearest
        The batch, and the kNN distances for the input drift detector (or None).

    Returns
    -------
    n, cut
        Events of the batch consumed: all, or up to and including the event at which a
        loss drift was detected; and the stream offset before which memories are to be
        trimmed (the drift asked for it), or None.
    """
    regression = learner.regression
    error, correct = errors(learner, combined[rows] if regression else combined[rows].argmax(1), y)
    ids = [events[i].id for i in rows]
    seen = learner.events_seen
    found = learner.drift.update(error, ids, seen, nearest, np.asarray(rows))
    n, m = len(events), len(rows)
    loss = [r for r in found if r.detector == "loss"]
    if loss:
        n = loss[0].event - seen + 1
        m = int(np.searchsorted(rows, n))
    if not regression:
        learner.recent_labels.extend(y[:m].tolist())
    s = learner.settings
    if losses:  # every expert's discounted loss in one pass: (parts,) totals, (parts, m)
        hedge = learner.hedge
        asleep = [name for name in hedge if name not in losses]
        if asleep:  # not ready yet, or its memory emptied: it pays the mixture's loss
            mixed = learner._losses({MIXTURE: combined}, rows, y)[MIXTURE]
            losses = {**losses, **dict.fromkeys(asleep, mixed)}
        totals = np.array([hedge[name] for name in losses])
        new = hedge_losses_rows(totals, np.array([v[:m] for v in losses.values()]), s.hedge_decay)
        hedge.update(zip(losses, new.tolist(), strict=True))
    learner.hedge.update(fixed_share(learner.hedge, s.hedge_eta, s.hedge_share, m))
    learner.recovery.update(correct[:m])
    cuts = [on_drift(learner, record, seen + rows[m - 1] + 1) for record in found]
    return n, max((c for c in cuts if c is not None), default=None)
