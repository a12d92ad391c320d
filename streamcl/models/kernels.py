"""The numpy kernels of prediction: the MLP forward pass, exact kNN search and vote, NCM.

Shared by the learner (its hot path) and the serving replicas (through
:class:`~streamcl.models.predictor.Snapshot`); plain numpy plus FAISS's brute-force kNN, no
torch and no training code.

References
----------
Prabhu, A. et al. (2023). Online continual learning without the storage constraint.
    arXiv:2305.09253. (kNN over a growing memory.)
Rebuffi, S.-A. et al. (2017). iCaRL: incremental classifier and representation learning.
    CVPR 2017. (Nearest-class-mean classification on class prototypes.)
"""

from __future__ import annotations

import functools
from typing import Any

import faiss
import numpy as np

__all__ = ["forward", "knn_search", "ncm_proba", "pad_columns", "tree_lists", "tree_proba", "vote"]

#: Batches up to this many rows walk a tree in Python (:func:`tree_proba`'s ``lists``).
SMALL_BATCH = 8

# Small searches: OpenMP threads cost more than they give, and the BLAS kernel beats FAISS's
# per-query scan already for a handful of queries (2x for 16 queries). Set once for every
# process that predicts: the two kernels round differently (~1e-5), so the learner and the
# serving replicas must use the same one to predict the same.
faiss.omp_set_num_threads(1)
faiss.cvar.distance_compute_blas_threshold = 4


def forward(params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits ``(batch, n_outputs)`` float32 and post-ReLU activations of each hidden layer.

    ``x`` ``(batch, n_inputs)`` float32 must have the first layer's width.
    """
    acts: list[np.ndarray] = []
    h = x
    last = len(params) // 2 - 1
    for i in range(0, len(params), 2):
        z = h @ params[i].T
        z += params[i + 1]
        if i // 2 < last:
            np.maximum(z, 0.0, out=z)
            acts.append(z)
        h = z
    return h, acts


def pad_columns(a: np.ndarray, width: int) -> np.ndarray:
    """``a`` ``(rows, w)`` with zero columns appended up to ``width``."""
    if a.shape[1] >= width:
        return a
    out = np.zeros((a.shape[0], width), dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def knn_search(keys: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest keys (squared L2) with FAISS's brute-force kernel.

    Parameters
    ----------
    keys
        ``(n, d)`` float32, C-contiguous; ``n >= 1``.
    queries
        ``(batch, d')`` float32 (zero-padded or cut to ``d``).
    k
        Neighbours wanted; clipped to ``n``.

    Returns
    -------
    distances, indices : numpy.ndarray
        ``(batch, min(k, n))`` float32 squared distances and int64 row indices, nearest first.
    """
    n, width = keys.shape
    k = min(k, n)
    q = queries
    if q.dtype != np.float32 or q.shape[1] != width or not q.flags.c_contiguous:
        q = np.ascontiguousarray(pad_columns(q.astype(np.float32, copy=False), width)[:, :width])
    if not keys.flags.c_contiguous:
        keys = np.ascontiguousarray(keys)
    # faiss.knn's own call (its wrapper would copy the queries again): the same kernel
    d = np.empty((len(q), k), dtype=np.float32)
    i = np.empty((len(q), k), dtype=np.int64)
    ptr = faiss.swig_ptr
    faiss.knn_L2sqr(ptr(q), ptr(keys), width, len(q), n, k, ptr(d), ptr(i))
    return d, i


def vote(
    distances: np.ndarray, targets: np.ndarray, n_classes: int, regression: bool
) -> np.ndarray:
    """Distance-weighted vote of neighbours: weights ``1 / (d^2 + 1e-3)`` (``d``: L2 distance).

    Inverse squared distance lets a few close neighbours outvote many distant ones, so a
    class seen only a few times is still predicted near its examples.

    Parameters
    ----------
    distances
        ``(batch, k)`` squared distances (float32 or float64); ``inf`` marks an unusable
        slot, whose weight is 0 (at least one slot per row must be finite).
    targets
        ``(batch, k)`` class indices (int64) or values (float32).
    n_classes
        Output width for classification.
    regression
        Return the weighted mean value ``(batch,)`` instead of probabilities.

    Returns
    -------
    numpy.ndarray
        ``(batch, n_classes)`` float32 probabilities (add-0.01 smoothed) or ``(batch,)``.
    """
    w = 1.0 / (np.maximum(distances, 0.0) + 1e-3)
    if regression:
        return np.asarray((w * targets).sum(1) / w.sum(1))
    # np.add.reduce is what ndarray.sum calls, without its Python wrapper
    batch, k = w.shape
    # One weighted bincount over (row, class) cells, the 0.01 smoothing first: it adds in
    # the same order as the sequential ``probs[row, class] += w`` (and is 3x faster than
    # ``np.add.at``).
    cells, row_base, smoothing = _vote_layout(batch, k, n_classes)
    index = np.concatenate([cells, row_base + targets.ravel().astype(np.int64)])
    weights = np.concatenate([smoothing, (w / np.add.reduce(w, 1, keepdims=True)).ravel()])
    probs = np.asarray(np.bincount(index, weights, minlength=len(cells)), dtype=np.float64)
    probs = probs.reshape(batch, n_classes)
    probs /= np.add.reduce(probs, 1, keepdims=True)
    return probs.astype(np.float32)


@functools.lru_cache(maxsize=32)
def _vote_layout(batch: int, k: int, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`vote`'s constant arrays, cached read-only (the same shapes every batch).

    ``(batch * n_classes,)`` cell indices, ``(batch * k,)`` first cell of each neighbour's
    row and ``(batch * n_classes,)`` smoothing weights 0.01.
    """
    out = (
        np.arange(batch * n_classes),
        (np.arange(batch) * n_classes).repeat(k),
        np.full(batch * n_classes, 0.01),
    )
    for a in out:
        a.flags.writeable = False
    return out


def ncm_proba(
    x: np.ndarray, means: np.ndarray, counts: np.ndarray, temperature: float, n_classes: int
) -> np.ndarray:
    """Nearest-class-mean probabilities; see :class:`Prototypes`. ``(batch, n_classes)``."""
    seen = np.zeros(n_classes, dtype=bool)
    k = min(n_classes, len(counts))
    seen[:k] = counts[:k] > 0
    if not seen.any():
        return np.full((len(x), n_classes), 1.0 / max(n_classes, 1), dtype=np.float32)
    width = max(x.shape[1], means.shape[1])
    if means.shape == (n_classes, width) and means.dtype == np.float32:
        mm = means  # already the padded matrix below
    else:
        mm = np.zeros((n_classes, width), dtype=np.float32)
        mm[:k, : means.shape[1]] = means[:k]
    xm = pad_columns(x, width)
    # ufunc reductions: the ndarray methods' Python wrappers cost more than the work here
    d2 = np.add.reduce(xm * xm, 1, keepdims=True) - 2 * xm @ mm.T + np.add.reduce(mm * mm, 1)
    every = seen.all()  # then the masks below change nothing
    logits = -np.maximum(d2, 0.0) / max(temperature, 1e-6)
    if not every:
        logits = np.where(seen, logits, -np.inf)
    logits -= np.maximum.reduce(logits, 1, keepdims=True)
    p = np.exp(logits)
    p /= np.add.reduce(p, 1, keepdims=True)
    p = 0.98 * p + 0.02 / seen.sum()
    return (p if every else np.where(seen, p, 0.0)).astype(np.float32)


def tree_lists(tree: tuple[np.ndarray, ...]) -> tuple[list[Any], ...]:
    """``(feature, threshold, left, right)`` of a :func:`tree_proba` tree as Python lists."""
    return tuple(a.tolist() for a in tree[:4])


def tree_proba(
    tree: tuple[np.ndarray, ...],
    x: np.ndarray,
    n_classes: int,
    depth: int,
    lists: tuple[list[Any], ...] | None = None,
) -> np.ndarray:
    """Class probabilities of a fitted CART tree, one vectorised step per level.

    Parameters
    ----------
    tree
        ``(feature int64 (nodes,), threshold float64 (nodes,), left int64 (nodes,),
        right int64 (nodes,), proba float32 (nodes, classes))``: scikit-learn's ``tree_``
        arrays with every leaf made a fixed point (``left = right =`` itself, feature 0,
        threshold +inf; :func:`streamcl.learning.tree.tree_arrays`). A row goes left when
        ``x[:, feature] <= threshold`` (the float32 value against the float64 threshold,
        as scikit-learn compares).
    x
        ``(batch, width)`` float32; columns beyond ``width`` read as 0.
    n_classes
        Width of the result (classes learned since the fit get probability 0).
    depth
        The tree's depth (levels walked).
    lists
        :func:`tree_lists` of ``tree``, if cached: a batch of a few rows (a request) is then
        walked in Python, ~30x faster than numpy's per-call overhead, with the same
        comparisons (a float32 value as a Python float against the float64 threshold).

    Returns
    -------
    numpy.ndarray
        ``(batch, n_classes)`` float32.
    """
    feature, threshold, left, right, proba = tree
    if lists is not None and len(x) <= SMALL_BATCH:
        f_, t_, l_, r_ = lists
        leaves = []
        for row in x.tolist():
            at = 0
            for _ in range(depth):
                f = f_[at]
                at = l_[at] if (row[f] if f < len(row) else 0.0) <= t_[at] else r_[at]
            leaves.append(at)
        node = np.array(leaves, dtype=np.int64)
    else:
        x = np.ascontiguousarray(pad_columns(x, int(feature.max(initial=0)) + 1))
        flat = x.ravel()
        base = np.arange(len(x), dtype=np.int64) * x.shape[1]
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(depth):
            go_left = flat[base + feature[node]] <= threshold[node]
            node = np.where(go_left, left[node], right[node])
    return pad_columns(proba[node], n_classes)[:, :n_classes]
