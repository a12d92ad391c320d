"""A tree expert: a decision tree refit on a sliding window of the latest labelled events.

Concepts made of axis-aligned thresholds and their interactions (river's Agrawal and
RandomTree generators, many tabular streams) are what trees learn and what the MLP, the kNN
vote and a linear model learn slowly. Incremental trees (Hoeffding trees, ARF) pay Python
per event; here the tree is *batch-incremental* (Read, J., Bifet, A., Pfahringer, B. &
Holmes, G. 2012, Batch-incremental versus instance-incremental learning in dynamic and
evolving data, IDA): every ``every`` labelled events, scikit-learn's CART
(``DecisionTreeClassifier``, Breiman et al. 1984; its builder, called by :func:`fit_cart`)
is refit on the last ``window`` rows, which also forgets an old concept within one window.
Early in a stream it is refit at doubling sizes (32, 64, 128, ... events), so it helps from
the first hundred events.

The fitted tree is kept as plain arrays (``feature``, ``threshold``, ``left``, ``right``,
``proba``): prediction is a vectorised walk (:func:`streamcl.models.kernels.tree_proba`)
that serving replicas run without scikit-learn. Rows are the featurizer's standardised
inputs; when the running scaler moves, the window's rows and the thresholds are mapped to
the new scale (:func:`streamcl.learning.standardise.restandardise`), which a tree's splits
follow exactly (the map is increasing per column). Classification only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from sklearn.tree import DecisionTreeClassifier, _criterion, _splitter, _tree

from streamcl.models.kernels import SMALL_BATCH, pad_columns, tree_proba

__all__ = ["WindowTree", "fit_cart", "tree_arrays"]

#: Rows before the first fit, then the sizes double until ``every``.
FIRST_FIT = 32


class WindowTree:
    """CART refit on a sliding window (see the module docstring).

    Parameters
    ----------
    window
        Latest labelled rows kept and fit on.
    every
        Refit after this many new rows (after the doubling start).
    depth
        Largest tree depth.
    min_leaf
        Fewest rows in a leaf (scikit-learn's ``min_samples_leaf``).
    seed
        scikit-learn's ``random_state`` (ties between equally good splits).

    Attributes
    ----------
    arrays : tuple or None
        :func:`tree_arrays` of the last fit (leaves are fixed points of the walk), or None
        before the first fit.
    """

    def __init__(
        self, window: int = 500, every: int = 250, depth: int = 8, min_leaf: int = 5, seed: int = 0
    ) -> None:
        self.window, self.every, self.depth = window, every, depth
        self.min_leaf, self.seed = min_leaf, seed
        self.x = np.zeros((0, 0), dtype=np.float32)
        self.y = np.zeros(0, dtype=np.int64)
        self.t = np.zeros(0, dtype=np.int64)  # the rows' stream offsets (for forget_before)
        self.since = 0
        self.arrays: tuple[np.ndarray, ...] | None = None
        self._fitted: Any = None  # the last fit's sklearn Tree (not checkpointed)
        # reseeded before every fit: the stream of a fresh RandomState(seed), which
        # scikit-learn would build from the int seed (~75 us, against ~1 us for a reseed)
        self._rng = np.random.RandomState(seed)
        self._width = 0  # columns it was fit on
        # (arrays[:4], their lists): the walk's Python lists, see _lists
        self._list_cache: tuple[tuple[np.ndarray, ...], tuple[list[Any], ...]] | None = None

    @property
    def ready(self) -> bool:
        """True once a tree was fit."""
        return self.arrays is not None

    @property
    def nbytes(self) -> int:
        """Bytes of the window and the tree."""
        tree = sum(a.nbytes for a in self.arrays) if self.arrays is not None else 0
        return int(self.x.nbytes + self.y.nbytes + tree)

    def predict(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """Class probabilities ``(batch, n_classes)`` float32 for ``x`` ``(batch, width)``."""
        assert self.arrays is not None
        proba = self.arrays[4]
        if self._fitted is None or x.shape[1] < self._width:  # restored or rescaled: the walk
            lists = self._lists() if len(x) <= SMALL_BATCH else None
            return tree_proba(self.arrays, x, n_classes, self.depth, lists)
        # scikit-learn's compiled walk: the same comparisons, the same leaves, ~15x faster
        leaves = self._fitted.apply(np.ascontiguousarray(x[:, : self._width]))
        return pad_columns(proba[leaves], n_classes)[:, :n_classes]

    def _lists(self) -> tuple[list[Any], ...]:
        """:func:`~streamcl.models.kernels.tree_lists` of :attr:`arrays`, cached by identity.

        For the walk of a few rows (early steps of a stream). A rescale replaces only the
        thresholds, so the other lists are kept while their arrays are the same.
        """
        assert self.arrays is not None
        arrays = tuple(self.arrays[:4])
        cached = self._list_cache
        if cached is None or any(a is not b for a, b in zip(cached[0], arrays, strict=True)):
            lists = [
                cached[1][i] if cached is not None and cached[0][i] is a else a.tolist()
                for i, a in enumerate(arrays)
            ]
            self._list_cache = cached = (arrays, tuple(lists))
        return cached[1]

    def learn(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, times: np.ndarray | None = None
    ) -> None:
        """Append rows ``x`` ``(m, width)`` float32, classes ``y`` ``(m,)`` int64; refit if due.

        ``times`` ``(m,)`` int64: the rows' stream offsets (0 when None), which
        :meth:`forget_before` compares with a drift's change point.
        """
        if len(x) == 0:
            return
        width = max(x.shape[1], self.x.shape[1])
        self.x = np.concatenate([pad_columns(self.x, width), pad_columns(x, width)])
        self.x = self.x[-self.window :]
        self.y = np.concatenate([self.y, y])[-self.window :]
        t = np.zeros(len(y), np.int64) if times is None else np.asarray(times, np.int64)
        self.t = np.concatenate([self.t, t])[-self.window :]
        self.since += len(x)
        n = len(self.y)
        due = self.every if n >= self.window else min(self.every, max(FIRST_FIT, n // 2))
        if self.since >= due and n >= FIRST_FIT:
            self._fit(n_classes)

    def forget_before(self, time: int, n_classes: int) -> int:
        """Drop the rows from before stream offset ``time`` (a drift's change point).

        The tree is refit on the rows left, at once if there are :data:`FIRST_FIT` of them;
        with fewer it is dropped (:attr:`ready` False: the Hedge mixture treats it as a
        sleeping expert) until the doubling start refits it. A tree of the old concept
        would otherwise vote for it for up to ``window`` events.

        Returns
        -------
        int
            Rows removed.
        """
        keep = self.t >= time
        removed = int(len(keep) - np.count_nonzero(keep))
        if removed == 0:
            return 0
        self.x, self.y, self.t = self.x[keep], self.y[keep], self.t[keep]
        if len(self.y) >= FIRST_FIT:
            self._fit(n_classes)
        else:
            self.arrays, self._fitted, self._list_cache = None, None, None
            self.since = len(self.y)
        return removed

    def _fit(self, n_classes: int) -> None:
        self.since = 0
        self._rng.seed(self.seed)
        tree, classes = fit_cart(self.x, self.y, self.depth, self.min_leaf, self._rng)
        self.arrays = tree_arrays(tree, classes, n_classes)
        self._fitted, self._width = tree, self.x.shape[1]

    def rescale(self, cols: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> None:
        """Map the window and the thresholds: ``v * scale + offset`` in columns ``cols``.

        ``scale`` ``(k,)`` float32 is positive, so every split keeps its rows.
        """
        keep = cols < self.x.shape[1]
        c, s, o = cols[keep], scale[keep], offset[keep]
        if len(self.x):
            self.x[:, c] = self.x[:, c] * s + o
        if self.arrays is not None:  # leaves keep +inf
            feature, threshold = self.arrays[0], self.arrays[1].copy()
            where = np.full(max(self.x.shape[1], int(feature.max(initial=0)) + 1), -1)
            where[c] = np.arange(len(c))
            j = where[feature]
            moved = (j >= 0) & np.isfinite(threshold)
            threshold[moved] = threshold[moved] * s[j[moved]] + o[j[moved]]
            self.arrays = (feature, threshold, *self.arrays[2:])
            self._fitted = None  # its thresholds are in the old scale: walk until the next fit

    def state_dict(self) -> dict[str, Any]:
        """Plain arrays and ints (no pickled scikit-learn object)."""
        return {
            "x": self.x.copy(),
            "y": self.y.copy(),
            "t": self.t.copy(),
            "since": self.since,
            "arrays": None if self.arrays is None else [a.copy() for a in self.arrays],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.x = np.asarray(state["x"], dtype=np.float32)
        self.y = np.asarray(state["y"], dtype=np.int64)
        # checkpoints from before the offsets were kept: rows count as from offset 0
        self.t = np.asarray(state.get("t", np.zeros(len(self.y))), dtype=np.int64)
        self.since = int(state["since"])
        self._fitted = None
        arrays = state["arrays"]
        self.arrays = None if arrays is None else tuple(np.asarray(a) for a in arrays)


def fit_cart(
    x: np.ndarray, y: np.ndarray, depth: int, min_leaf: int, rng: np.random.RandomState
) -> tuple[Any, np.ndarray]:
    """The ``tree_`` and ``classes_`` of scikit-learn's CART fit on ``x`` and ``y``.

    What ``DecisionTreeClassifier(max_depth=depth, min_samples_leaf=min_leaf,
    random_state=rng).fit(x, y, check_input=False)`` builds, by the calls ``fit`` makes to
    scikit-learn's compiled builder (Gini, the best split over every feature, depth first,
    no pruning) without the Python around them (the target type check above all: ~0.4 ms
    of a 1.1 ms fit on elec2's window of 500 rows). Uses scikit-learn's private modules (the
    same signatures since 1.4); if they change, the public ``fit``.

    Parameters
    ----------
    x
        ``(n, width)`` float32, C-contiguous and finite (the featurizer's output; what
        ``check_input=False`` needs anyway).
    y
        ``(n,)`` int64 class indices.
    depth, min_leaf
        ``max_depth`` and ``min_samples_leaf``.
    rng
        ``random_state`` (ties between equally good splits); one draw is taken from it.

    Returns
    -------
    tree, classes
        The fitted ``sklearn.tree._tree.Tree`` and the sorted classes ``(n_classes,)`` of
        ``y`` that its ``value`` columns stand for.
    """
    classes, encoded = np.unique(y, return_inverse=True)
    try:
        n_classes = np.array([len(classes)], dtype=np.intp)
        splitter = _splitter.BestSplitter(
            _criterion.Gini(1, n_classes), x.shape[1], min_leaf, 0.0, rng, None
        )
        tree = _tree.Tree(x.shape[1], n_classes, 1)
        builder = _tree.DepthFirstTreeBuilder(
            splitter, max(2, 2 * min_leaf), min_leaf, 0.0, depth, 0.0
        )
        target = np.ascontiguousarray(encoded.reshape(-1, 1), dtype=np.float64)
        builder.build(tree, x, target, None, None)
        return tree, classes
    except TypeError:  # raised by a changed signature before the builder draws from rng
        fitted = DecisionTreeClassifier(
            max_depth=depth, min_samples_leaf=min_leaf, random_state=rng
        )
        with sklearn.config_context(skip_parameter_validation=True):
            fitted.fit(x, y, check_input=False)
        return fitted.tree_, fitted.classes_


def tree_arrays(t: Any, classes: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """A fitted scikit-learn tree as the arrays of :func:`~streamcl.models.kernels.tree_proba`.

    ``t`` is a ``DecisionTreeClassifier``'s ``tree_`` and ``classes`` its ``classes_``
    (class indices of the learner, int64). Every leaf becomes a fixed point of the walk (its
    children itself, feature 0, threshold +inf), so the walk needs no leaf test; ``proba``
    ``(nodes, n_classes)`` float32 holds each node's class fractions in the learner's class
    order.
    """
    leaf = t.children_left < 0
    nodes = np.arange(t.node_count, dtype=np.int64)
    value = t.value[:, 0, :]  # (nodes, fitted classes)
    proba = np.zeros((t.node_count, n_classes), dtype=np.float32)
    proba[:, classes.astype(np.int64)] = value / np.maximum(value.sum(1, keepdims=True), 1e-12)
    return (
        np.where(leaf, 0, t.feature).astype(np.int64),
        np.where(leaf, np.inf, t.threshold).astype(np.float64),
        np.where(leaf, nodes, t.children_left).astype(np.int64),
        np.where(leaf, nodes, t.children_right).astype(np.int64),
        proba,
    )
