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
known at event time) or ``(n_experts,)`` predicted values (regression). Memory per
pending event: ``4 * n_experts * n_classes`` bytes plus the shared names tuple.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamcl.learning.combination import MIN_PROBABILITY, log_loss

__all__ = ["ExpertOutputs", "StepOutputs", "delayed_losses", "event_outputs", "outputs_state"]

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
) -> dict[str, np.ndarray]:
    """Each expert's loss on the joined events where it had an output, in join order.

    Parameters
    ----------
    outputs
        One :data:`ExpertOutputs` (or None: not scored) per joined event.
    y
        ``(n,)`` class indices (``-1``, or a class not known at event time: maximal loss)
        or target values.
    regression
        Squared error in units of ``scale`` instead of the log loss (nats, probabilities
        clipped at :data:`~streamcl.learning.combination.MIN_PROBABILITY`), as
        :func:`~streamcl.learning.combination.predictor_losses`.

    Returns
    -------
    dict[str, numpy.ndarray]
        ``{name: (n_present,) float64}``; an expert absent at an event's prediction has no
        loss for it (it was not in that mixture).
    """
    losses: dict[str, list[float]] = {}
    worst = -math.log(MIN_PROBABILITY)
    for entry, target in zip(outputs, y.tolist(), strict=True):
        if entry is None:
            continue
        names, values = entry
        if regression:
            picked = ((values - target) / scale) ** 2
        elif 0 <= target < values.shape[1]:
            picked = log_loss(values[:, int(target)])
        else:
            picked = np.full(len(names), worst)
        for name, loss in zip(names, picked.tolist(), strict=True):
            losses.setdefault(name, []).append(loss)
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
