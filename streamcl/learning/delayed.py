"""Delayed labels and the Hedge weights: each expert's event-time output, kept until its label.

When a label arrives after its event was predicted (the join in
:mod:`streamcl.stream.labels`), the Hedge weights (:mod:`streamcl.learning.combination`)
must learn from what each expert said *when the event was predicted*, as they do for
labels that come with their events: a re-prediction at label time would score experts
that have since learned from later events (and from the event's neighbours), and would
favour the fastest learners. So the learner records every expert's output of its last
:meth:`~streamcl.learning.learner.Learner.predict_learn` call, the stream loop keeps the
outputs of the unlabelled events with them in the pending store, and the join scores
them (Freund, Y. & Schapire, R. E. 1997, JCSS 55(1): Hedge needs each expert's loss on
each outcome, in any order; Grzenda, M., Gomes, H. M. & Bifet, A. 2020, Delayed labelling
evaluation for data streams, Data Mining and Knowledge Discovery 34: predictions are
scored when they were made, labels learned when they arrive).

An :data:`ExpertOutputs` is ``(names, outputs)``: the experts' names in order and a
float32 array ``(n_experts, n_classes)`` of class probabilities (as many classes as were
known at event time) or ``(n_experts,)`` predicted values (regression). Its last row,
named :data:`~.combination.MIXTURE`, is the Hedge mixture's own output: an expert that
had nothing to say at event time (a sleeping expert, see :mod:`~.scoring`) pays the
mixture's loss on join, as it would have with its label. Memory per pending event:
``4 * (n_experts + 1) * n_classes`` bytes plus the shared names tuple.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcl.events import Label
from streamcl.learning.adaptation import on_drift, trim
from streamcl.learning.combination import (
    MIN_PROBABILITY,
    MIXTURE,
    brier_from,
    hedge_losses,
    log_loss,
)

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = [
    "ExpertOutputs",
    "StepOutputs",
    "delayed_losses",
    "event_outputs",
    "learn_delayed",
    "outputs_state",
]

#: ``(names, (n_experts, n_classes) or (n_experts,) float32)`` of one event.
ExpertOutputs = tuple[tuple[str, ...], np.ndarray]


#: One learning step's expert outputs ``{name: (n, ...) array}`` and its events ``n``.
StepOutputs = tuple[Mapping[str, np.ndarray], int]


def event_outputs(
    steps: Sequence[StepOutputs], indices: Sequence[int]
) -> list[ExpertOutputs | None]:
    """Each expert's output for the events at ``indices`` of a ``predict_learn`` call.

    Parameters
    ----------
    steps
        The call's steps in order (their event counts add up to the call's events).
    indices
        Positions in the call's events, increasing.

    Returns
    -------
    list
        One :data:`ExpertOutputs` per index (copies), or None where no expert was ready.
    """
    out: list[ExpertOutputs | None] = []
    start, s = 0, 0
    for i in indices:
        while s < len(steps) and i >= start + steps[s][1]:
            start += steps[s][1]
            s += 1
        if s == len(steps) or not steps[s][0]:
            out.append(None)
            continue
        parts = steps[s][0]
        names = tuple(parts)
        out.append((names, np.array([parts[n][i - start] for n in names], dtype=np.float32)))
    return out


def delayed_losses(
    outputs: Sequence[ExpertOutputs | None],
    y: np.ndarray,
    regression: bool,
    scale: float = 1.0,
    loss: str = "brier",
    experts: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Each expert's loss on the joined events, in join order.

    Parameters
    ----------
    outputs
        One :data:`ExpertOutputs` (or None: not scored) per joined event.
    y
        ``(n,)`` class indices (``-1``, or a class not known at event time: maximal loss)
        or target values.
    regression
        Squared error in units of ``scale`` instead of a classification loss.
    loss
        ``"brier"`` or ``"log"`` (nats, probabilities clipped at
        :data:`~streamcl.models.predictor.MIN_PROBABILITY`), as
        :func:`~streamcl.learning.combination.predictor_losses`.
    experts
        Every expert of the mixture: one of them absent from an event's outputs pays the
        :data:`~.combination.MIXTURE` row's loss for it (outputs kept without that row: no loss).

    Returns
    -------
    dict[str, numpy.ndarray]
        ``{name: (n,) float64}`` over the events it had an output for or was charged,
        the :data:`~.combination.MIXTURE` row's own losses included.
    """
    losses: dict[str, list[float]] = {}
    worst = -math.log(MIN_PROBABILITY)
    for entry, target in zip(outputs, y.tolist(), strict=True):
        if entry is None:
            continue
        names, values = entry
        if regression:
            picked = ((values - target) / scale) ** 2
        elif not 0 <= target < values.shape[1]:
            picked = np.full(len(names), 2.0 if loss == "brier" else worst)
        elif loss == "brier":  # one event: the row formula, without brier_loss's indexing
            p = values.astype(np.float64)
            picked = brier_from(p, p[:, int(target)])
        else:
            picked = log_loss(values[:, int(target)])
        values_of = dict(zip(names, picked.tolist(), strict=True))
        mixed = values_of.get(MIXTURE)
        if mixed is not None:  # sleeping experts pay the mixture's loss
            for name in experts:
                values_of.setdefault(name, mixed)
        for name, value in values_of.items():
            losses.setdefault(name, []).append(value)
    return {name: np.array(v, dtype=np.float64) for name, v in losses.items()}


def outputs_state(entry: ExpertOutputs | None) -> list[Any] | None:
    """JSON-able ``[names, nested lists]`` of an :data:`ExpertOutputs` (checkpoints)."""
    if entry is None:
        return None
    return [list(entry[0]), entry[1].tolist()]


def outputs_from_state(state: Sequence[Any] | None) -> ExpertOutputs | None:
    """Inverse of :func:`outputs_state`."""
    if state is None:
        return None
    names, values = state
    return tuple(str(n) for n in names), np.asarray(values, dtype=np.float32)


def learn_delayed(
    learner: Learner,
    x: np.ndarray,
    labels: Sequence[Label],
    predicted: Sequence[Label | None],
    ids: Sequence[str],
    experts: Sequence[ExpertOutputs | None] | None = None,
) -> float:
    """Learn events whose labels arrived after they were predicted (the label join).

    The predictions recorded at event time are scored against the labels first: the
    recovery metrics and the loss drift detector see them in join order, the Hedge
    weights learn from each expert's event-time output (``experts``, :mod:`~.delayed`),
    and a drift takes its actions as in :meth:`predict_learn` (the memory trim counts
    the joined labels back from the current stream offset; the Hedge weights start
    afresh after the detecting event). Then one :meth:`learn_matrix` step.

    Parameters
    ----------
    x
        ``(batch, n_columns)`` float32 rows as featurized at event time.
    labels
        ``batch`` labels (class labels or numbers).
    predicted
        ``batch`` predictions made at event time (None: the model was not ready, the
        event is learned but not scored).
    ids
        ``batch`` event ids, for the drift log.
    experts
        ``batch`` outputs of :meth:`expert_outputs` kept with the pending events
        (None, or None entries: the Hedge weights do not learn from those events).

    Returns
    -------
    float
        :meth:`learn_matrix`'s loss.
    """
    scored = [i for i, p in enumerate(predicted) if p is not None]
    cut = None
    if scored:
        y = learner.targets([labels[i] for i in scored])
        given = [p for p in predicted if p is not None]  # aligned with ``scored``
        errors, correct = learner.errors(learner.targets(given), y)
        names = [ids[i] for i in scored]
        start = 0
        while start < len(scored):
            at_now = np.zeros(len(scored) - start, np.int64)  # detected at this offset
            record, used = learner.drift.update_loss(
                errors[start:], names[start:], learner.events_seen, at_now
            )
            if not learner.regression:
                learner.recent_labels.extend(y[start : start + used].tolist())
            learner.recovery.update(correct[start : start + used])
            if experts is not None:
                outputs = [experts[i] for i in scored[start : start + used]]
                _hedge_delayed(learner, outputs, y[start : start + used])
            start += used
            at = None if record is None else on_drift(learner, record, learner.events_seen, True)
            if at is not None:
                cut = at if cut is None else max(cut, at)
    loss = learner.learn_matrix(x, labels)
    if cut is not None:
        trim(learner, cut)
    return loss


def _hedge_delayed(learner: Learner, outputs: list[ExpertOutputs | None], y: np.ndarray) -> None:
    """Hedge (and calibration) update from joined events' event-time expert outputs."""
    s = learner.settings
    losses = delayed_losses(
        outputs,
        y,
        learner.regression,
        learner.trainer.target_std(),
        s.hedge_loss,
        list(learner.hedge),
    )
    for name, values in losses.items():
        if name in learner.hedge:
            scaled = s.hedge_delayed_scale * values
            learner.hedge[name] = hedge_losses(learner.hedge[name], scaled, s.hedge_delayed_decay)
    if learner.calibration is not None:
        learner.calibration.learn_delayed(outputs, y, s.hedge_delayed_scale)
