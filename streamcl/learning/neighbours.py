"""A micro-batch's own events as extra kNN neighbours, merged with a memory's.

Test-then-train per event inside a micro-batch: event ``i`` is predicted after the labels
of events ``j < i`` are known, so a kNN vote may use them and react to a change inside the
batch, not one batch later (:func:`batch_neighbours`); :func:`merge_neighbours` keeps the
``k`` nearest of a memory's neighbours and those (:meth:`.memory.KNNMemory.predict`).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["batch_neighbours", "merge_neighbours"]


#: Strictly lower-triangular masks by batch size (event ``i`` may use events ``j < i``).
_EARLIER: dict[int, np.ndarray] = {}


def batch_neighbours(keys: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each event's earlier labelled events of the same micro-batch, as extra neighbours.

    Test-then-train per event inside a micro-batch: event ``i`` is predicted after the
    labels of events ``j < i`` are known (as for the Hedge weights and the label lags), so
    a kNN vote may use them and react to a change inside the batch, not one batch later.

    Parameters
    ----------
    keys
        ``(batch, d)`` float32 keys of the batch's events, in stream order.
    known
        ``(batch,)`` float64 targets (class indices or values); NaN where an event has no
        label or one the memory cannot vote for (a class not seen yet).

    Returns
    -------
    distances, targets : numpy.ndarray
        ``(batch, batch)`` float32 squared L2 distances (``inf`` where ``j >= i`` or
        event ``j`` is unusable) and ``(batch, batch)`` float64 targets
        (``targets[i, j] = known[j]``, 0 where unusable), for
        :meth:`~streamcl.learning.memory.KNNMemory.predict`.
    """
    n = len(keys)
    earlier = _EARLIER.get(n)
    if earlier is None:
        earlier = _EARLIER.setdefault(n, np.tri(n, k=-1, dtype=bool))
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    sq = np.einsum("ij,ij->i", keys, keys)
    d = keys @ keys.T
    d *= -2.0
    d += sq[:, None]
    d += sq[None, :]
    np.maximum(d, 0.0, out=d)
    unusable = np.isnan(known)
    d[~(earlier & ~unusable)] = np.inf
    # np.nan_to_num and np.broadcast_to cost ~10 us of Python; targets are finite or NaN
    row = np.where(unusable, 0.0, known)
    return d, row[None, :].repeat(n, 0)


def merge_neighbours(
    d: np.ndarray, t: np.ndarray, extra_d: np.ndarray, extra_t: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of two neighbour lists ``(batch, k1)`` (sorted) and ``(batch, k2)``.

    ``d``, ``extra_d`` are float32 squared distances and ``t``, ``extra_t`` float64 targets.
    Returns ``(batch, min(k, k1 + k2))`` distances and targets, in no particular order (the
    vote sums them in this order); ``d, t`` themselves when no extra neighbour is nearer
    than the ``k``-th one.
    """
    if d.shape[1] >= k and not np.logical_or.reduce(extra_d < d[:, -1:], None):
        return d, t
    all_d = np.concatenate((d, extra_d), 1)
    all_t = np.concatenate((t, extra_t), 1)
    if all_d.shape[1] <= k:
        return all_d, all_t
    idx = all_d.argpartition(k - 1, axis=1)[:, :k]  # np.argpartition, without its wrapper
    # flat positions and take(): the elements of all_d[rows, idx], ~2x faster than that
    idx += _row_starts(*all_d.shape)
    return all_d.take(idx), all_t.take(idx)


@functools.lru_cache(maxsize=16)
def _row_starts(n: int, width: int) -> np.ndarray:
    """``arange(n)[:, None] * width`` int64: each row's first flat position, cached read-only."""
    starts = np.arange(n)[:, None] * width
    starts.flags.writeable = False
    return starts
