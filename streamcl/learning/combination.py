"""Combining the predictors online: losses, Hedge weights, and the in-batch mixture.

Prediction mixes the parametric head (``"mlp"``), the kNN memory (``"knn"``) and the class
prototypes (``"prototypes"``) with exponentially weighted (Hedge) weights learned from each
predictor's own prequential loss, discounted so the combination follows drifts (Freund, Y.
& Schapire, R. E. 1997, A decision-theoretic generalization of on-line learning and an
application to boosting, JCSS 55(1); Herbster, M. & Warmuth, M. 1998, Tracking the best
expert, Machine Learning 32). No task labels are used.

A classifier expert's loss is by default the Brier score of its class probabilities
(Brier, G. W. 1950, Verification of forecasts expressed in terms of probability, Monthly
Weather Review 78(1)): bounded in ``[0, 2]``, as the exponential-weights bounds assume
(Cesa-Bianchi, N. & Lugosi, G. 2006, Prediction, Learning, and Games, ch. 2), and unlike the
0/1 loss it charges a confident wrong expert more than a hesitant one, without the log
loss's unbounded penalty for one near-zero probability. ``hedge_loss="log"`` keeps the log
loss.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np

from streamcl.learning.snapshot import combine
from streamcl.models.predictor import MIN_PROBABILITY

__all__ = [
    "MIN_PROBABILITY",
    "MIXTURE",
    "brier_from",
    "brier_loss",
    "classes_changed",
    "fixed_share",
    "hedge_losses",
    "hedge_losses_rows",
    "hedge_weights",
    "log_loss",
    "predictor_losses",
    "sequential_mixture",
]


#: The name of the mixture's own output next to the experts' (a pending event's kept
#: outputs, :mod:`~streamcl.learning.delayed`); never an expert's name.
MIXTURE = "mixture"


def hedge_weights(hedge: Mapping[str, float], eta: float) -> dict[str, float]:
    """Weights ``softmax(-eta * L)`` of cumulative losses ``L`` by predictor, summing to 1."""
    low = min(hedge.values())
    raw = {n: math.exp(-eta * (v - low)) for n, v in hedge.items()}
    total = sum(raw.values())
    return {n: v / total for n, v in raw.items()}


def fixed_share(hedge: Mapping[str, float], eta: float, alpha: float, m: int) -> dict[str, float]:
    """The Fixed Share step after ``m`` labelled events (Herbster & Warmuth 1998).

    Each weight ``w = softmax(-eta * L)`` becomes ``(1 - a) w + a / N`` with
    ``a = 1 - (1 - alpha) ** m`` (``alpha`` per event, ``N`` predictors), so no weight falls
    below ``a / N`` (about ``m * alpha / N``): a predictor that was poor before a drift and
    is best after it takes the lead within about ``log(N / a) / (eta * gap)`` events, while
    between drifts the best one's weight can still grow towards ``1 - a``. Applied once per
    micro-batch; inside a batch the weights follow plain exponential weights (Herbster, M.
    & Warmuth, M. 1998, Tracking the best expert, Machine Learning 32, section 5).

    Parameters
    ----------
    hedge
        Cumulative losses by predictor (at least one), in the units of the Hedge loss.
    eta
        Hedge learning rate (``> 0``), as in :func:`hedge_weights`.
    alpha
        Share per labelled event, in ``[0, 1)``; 0 returns ``hedge`` unchanged.
    m
        Labelled events since the last step; 0 returns ``hedge`` unchanged.

    Returns
    -------
    dict[str, float]
        Losses ``-log(w') / eta`` whose :func:`hedge_weights` are the shared weights ``w'``.
    """
    if alpha <= 0.0 or m <= 0:
        return dict(hedge)
    a = 1.0 - (1.0 - alpha) ** m
    weights = hedge_weights(hedge, eta)
    floor = a / len(weights)
    return {n: -math.log((1.0 - a) * w + floor) / eta for n, w in weights.items()}


def hedge_losses(total: float, losses: np.ndarray, decay: float) -> float:
    """Discounted cumulative loss after per-event ``losses`` ``(n,)`` float64.

    ``L <- decay * L + loss_t`` for each event in order (fixed-share-like forgetting):
    :func:`hedge_losses_rows` of one predictor.
    """
    return float(hedge_losses_rows(np.array([total]), losses.reshape(1, -1), decay)[0])


def hedge_losses_rows(totals: np.ndarray, losses: np.ndarray, decay: float) -> np.ndarray:
    """Discounted cumulative losses of every predictor after per-event ``losses``.

    ``L <- decay * L + loss_t`` for each event in order, for each row at once: ``totals``
    ``(parts,)`` and ``losses`` ``(parts, n)`` float64; returns ``(parts,)`` float64.
    """
    n = losses.shape[1]
    if n == 0:
        return totals
    up, _ = _decay_powers(decay, n - 1)  # decay ** [0 .. n-1]: the newest loss counts most
    return totals * decay**n + np.add.reduce(up[::-1] * losses, 1)  # type: ignore[no-any-return]


def log_loss(picked: np.ndarray) -> np.ndarray:
    """``-log p`` in nats of the probabilities ``picked`` given to the true class (any shape).

    Probabilities are clipped to ``[MIN_PROBABILITY, 1]``, so a loss is at most
    ``-log MIN_PROBABILITY``.
    """
    clipped = np.minimum(np.maximum(picked, MIN_PROBABILITY), 1.0)  # np.clip, without its wrapper
    return -np.log(clipped)  # type: ignore[no-any-return]


def brier_loss(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Brier score ``sum_k (p_k - [y = k])^2`` of each row (Brier 1950), in ``[0, 2]``.

    Parameters
    ----------
    probabilities
        ``(..., n, n_classes)`` class probabilities.
    y
        ``(n,)`` int64 class indices; ``-1`` (a class not seen yet) costs the maximal
        loss, 2, as the log loss's clipped maximum does in :func:`predictor_losses`.

    Returns
    -------
    numpy.ndarray
        ``(..., n)`` float64.
    """
    p = probabilities.astype(np.float64)
    known = y >= 0
    picked = p[..., np.arange(len(y)), np.where(known, y, 0)]
    return np.where(known, brier_from(p, picked), 2.0)  # type: ignore[no-any-return]


def brier_from(p: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """Brier score ``sum_k p_k^2 - 2 p_y + 1``, ``(...)`` float64 (Brier 1950).

    ``p``: ``(..., n_classes)`` float64 probabilities; ``picked``: ``(...)``, the true class's.
    """
    return np.add.reduce(p * p, -1) - 2.0 * picked + 1.0  # type: ignore[no-any-return]


def predictor_losses(
    parts: Mapping[str, np.ndarray],
    rows: list[int],
    y: np.ndarray,
    regression: bool,
    scale: float = 1.0,
    loss: str = "brier",
) -> dict[str, np.ndarray]:
    """Each predictor's loss on the labelled ``rows``, ``(n_labelled,)`` float64.

    Parameters
    ----------
    parts
        ``{name: (batch, n_classes) probabilities or (batch,) values}``.
    rows
        Indices of the labelled events in the batch, ascending.
    y
        ``(n_labelled,)`` class indices (``-1``: a class not seen yet, maximal loss) or values.
    regression
        Squared error in units of ``scale`` (the target's standard deviation) instead of
        a classification loss.
    loss
        ``"brier"`` (:func:`brier_loss`) or ``"log"`` (nats, probabilities clipped at
        :data:`MIN_PROBABILITY`): the ``hedge_loss`` setting.
    """
    if regression:
        return {n: ((p[rows] - y) / scale) ** 2 for n, p in parts.items()}
    stacked = _stack(list(parts.values()))
    if len(rows) < stacked.shape[1]:  # else every event is labelled: rows is 0 .. n - 1
        stacked = stacked[:, rows]
    if loss == "brier":
        return dict(zip(parts, brier_loss(stacked, y), strict=True))
    known = y >= 0
    yk = np.where(known, y, 0)
    worst = -math.log(MIN_PROBABILITY)
    picked = stacked[:, np.arange(len(rows)), yk]  # (parts, n_labelled)
    return dict(zip(parts, np.where(known, log_loss(picked), worst), strict=True))


def sequential_mixture(
    parts: Mapping[str, np.ndarray],
    rows: list[int],
    losses: Mapping[str, np.ndarray],
    hedge: Mapping[str, float],
    decay: float,
    eta: float,
    n: int,
) -> np.ndarray:
    """Hedge mixture of ``parts`` with weights updated event by event inside the batch.

    Event ``i`` is weighted with the discounted cumulative losses of the events before it:
    those of earlier batches (``hedge``) and the labelled events ``< i`` of this batch,
    whose labels are known before ``i`` is predicted (DESIGN.md, "Prequential with
    micro-batches"), never its own.

    Returns
    -------
    numpy.ndarray
        ``(n, n_classes)`` probabilities or ``(n,)`` values, float32.
    """
    names = list(parts)
    if not rows:
        return combine(parts, hedge_weights(hedge, eta))
    m = len(rows)
    # S_k = decay * S_{k-1} + loss_{k-1}: the cumulative loss before labelled event k, in
    # closed form (decay ** -m stays finite for decay >= 0.85 and m <= 4096).
    lam = _stack([losses[name] for name in names])  # (parts, m)
    up, down = _decay_powers(decay, m)
    scaled = np.zeros((len(names), m + 1))
    np.add.accumulate(lam * down, 1, out=scaled[:, 1:])  # np.cumsum, without its wrapper
    base = np.array([hedge[name] for name in names])[:, None]
    cum = up * (base + scaled)  # (parts, m + 1)
    if m == n:  # every event labelled: event i comes after the labelled events < i
        c = cum[:, :n]
    else:
        before = np.searchsorted(np.asarray(rows), np.arange(n))  # labelled events before i
        c = cum[:, before]  # (parts, n)
    w = np.exp(-eta * (c - np.minimum.reduce(c, 0)))
    w /= np.add.reduce(w, 0)
    stacked = _stack([parts[name] for name in names])  # (parts, n) or (parts, n, classes)
    if stacked.ndim == 3:
        w = w[:, :, None]
    # sums over the parts in order, as ``w[0] * p[0] + w[1] * p[1] + ...``
    out: np.ndarray = np.add.reduce(w * stacked, 0)
    return out.astype(np.float32)


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.stack`` of equal-shape arrays; ``np.array`` builds the same array ~4 us faster."""
    return np.array(arrays)


@functools.lru_cache(maxsize=64)
def _decay_powers(decay: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``decay ** k`` for ``k = 0..m`` and ``decay ** -k`` for ``k = 1..m``, float64.

    Cached (read-only): every micro-batch of a stream asks for the same few.
    """
    k = np.arange(m + 1)
    up, down = decay**k, decay ** -(k[1:])
    up.flags.writeable = down.flags.writeable = False
    return up, down


def classes_changed(labels: np.ndarray, age: int, window: int = 500) -> bool | None:
    """Whether a drift ``age`` events ago came with a change of the classes themselves.

    True when most of the events since the change belong to classes (nearly, under 2%)
    absent from the ``window`` events before it, or to classes new when scored (``-1``):
    new classes arriving, old ones returning (a class-incremental stream). False for a
    shift of the proportions of the same classes (a concept drift). None when there are
    too few events to tell.

    Parameters
    ----------
    labels
        ``(n,)`` int64 recent class indices in stream order (``-1``: new when scored).
    """
    after, before = labels[len(labels) - age :], labels[-age - window : len(labels) - age]
    if len(after) < 5 or len(before) < 20:
        return None
    n = int(labels.max()) + 2
    p_after = np.bincount(after + 1, minlength=n) / len(after)
    p_before = np.bincount(before + 1, minlength=n) / len(before)
    absent = p_before < 0.02
    absent[0] = True  # index 0: classes new when scored
    return bool(p_after[absent].sum() > 0.5)
