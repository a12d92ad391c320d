"""Immutable model snapshots and the prediction combination: what serving needs to predict.

Prediction is a mixture of the predictors: the parametric head (``"mlp"``), the kNN
memories (``"knn"``, ``"recent"``), the class prototypes (``"prototypes"``), the temporal
expert (``"temporal"``), the linear expert (``"linear"``) and the tree expert (``"tree"``),
weighted by Hedge weights learned online from each predictor's own prequential loss (Freund,
Y. & Schapire, R. E. 1997, A decision-theoretic generalization of on-line learning, JCSS
55(1)). No task labels.

How serving stays consistent and never waits: the loop thread builds a :class:`Snapshot`
between learning steps from copies (weight tensors cloned, or the EMA weights; the memory
arrays copied at most every ``memory.snapshot_every`` steps and then shared read-only;
prototype means copied; the feature view is copy-on-write), and publishes it by a single
reference assignment. A snapshot is never mutated after construction, so a request reading
it cannot see half-updated state and takes no lock; the kNN search of a snapshot is exact
brute force over its own array copy (``faiss.knn``), never the live (possibly HNSW) index.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from streamcl.events import Event, Label
from streamcl.models.kernels import (
    forward,
    knn_search,
    ncm_proba,
    pad_columns,
    tree_lists,
    tree_proba,
    vote,
)
from streamcl.models.schema import FeatureSchema
from streamcl.models.view import FeatureView

__all__ = [
    "MIN_PROBABILITY",
    "Prediction",
    "Snapshot",
    "calibrate",
    "combine",
    "linear_proba",
    "log_probabilities",
    "softmax",
    "tempered",
    "to_predictions",
]

#: Probabilities are clipped here before a log: the experts' calibration (here and in the
#: learner) and the Hedge's log loss (a loss of at most ~9.2 nats).
MIN_PROBABILITY = 1e-4


@dataclass(frozen=True)
class Prediction:
    """One prediction.

    Attributes
    ----------
    label : int, str, float or None
        The predicted class (None before any class is known), or the predicted value
        (float) for regression.
    probabilities : dict[str, float]
        Class probabilities keyed by ``str(class)``; empty for regression.
    """

    label: Label | float | None
    probabilities: dict[str, float]


def to_predictions(probs: np.ndarray, classes: Sequence[Label]) -> list[Prediction]:
    """Rows of ``probs`` ``(batch, n_classes)`` as :class:`Prediction` objects."""
    names = [str(c) for c in classes]
    best = probs.argmax(axis=1).tolist()
    # tolist() gives floats; the lengths match by construction (zip's strict check costs
    # a quarter of this function, ~0.6 us an event)
    return [
        Prediction(classes[b], dict(zip(names, row)))  # noqa: B905
        for b, row in zip(best, probs.tolist())  # noqa: B905
    ]


def combine(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mixture of the available predictors' outputs.

    Parameters
    ----------
    parts
        ``{name: (batch, n_classes) probabilities or (batch,) values}``; predictors with
        nothing to say (empty memory) are simply absent.
    weights
        Hedge weights by name; renormalised over ``parts``.

    Returns
    -------
    numpy.ndarray
        Same shape as each part, float32.
    """
    total = sum(weights.get(n, 0.0) for n in parts) or 1.0
    out = None
    for name, p in parts.items():
        w = weights.get(name, 0.0) / total
        out = p * w if out is None else out + p * w
    assert out is not None
    return out.astype(np.float32, copy=False)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``z`` ``(batch, n)`` float32."""
    # ufunc reductions: what the ndarray methods call, without their Python wrappers
    e = np.exp(z - np.maximum.reduce(z, 1, keepdims=True))
    return e / np.add.reduce(e, 1, keepdims=True)  # type: ignore[no-any-return]


def calibrate(
    parts: Mapping[str, np.ndarray], scales: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Temperature-scaled experts: ``softmax(s * log p)`` for each expert ``p`` of ``parts``.

    Parameters
    ----------
    parts
        ``{name: (batch, n_classes) float32}`` class probabilities, all of one shape.
    scales
        Inverse temperature ``s`` by name; an expert absent or at 1 is passed through as it
        is (the same array).

    Returns
    -------
    dict[str, numpy.ndarray]
        ``(batch, n_classes)`` float32 rows summing to 1, in ``parts``' order (Guo et al.
        2017; :mod:`streamcl.learning.calibration`).
    """
    names = [n for n in parts if scales.get(n, 1.0) != 1.0]
    out = dict(parts)
    if names:
        logs = log_probabilities([parts[n] for n in names])
        s = np.array([scales[n] for n in names], np.float32)
        out.update(zip(names, tempered(logs, s), strict=True))
    return out


def log_probabilities(parts: Sequence[np.ndarray]) -> np.ndarray:
    """``log p`` of equal-shape probabilities, clipped at :data:`MIN_PROBABILITY`.

    Returns ``(experts, batch, k)`` float32.
    """
    floor = np.float32(MIN_PROBABILITY)
    return np.log(np.maximum(np.array(parts), floor))  # type: ignore[no-any-return]


def tempered(logs: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``softmax(s * log p)`` over the last axis of ``logs`` ``(experts, batch, k)`` float32.

    ``scales``: ``(experts,)`` float32 inverse temperatures. Returns a new array.
    """
    q = logs * scales[:, None, None]
    q -= np.maximum.reduce(q, 2, keepdims=True)
    np.exp(q, out=q)
    q /= np.add.reduce(q, 2, keepdims=True)
    return q  # type: ignore[no-any-return]


def linear_proba(
    x: np.ndarray, weights: np.ndarray, bias: np.ndarray, n_classes: int
) -> np.ndarray:
    """Softmax regression probabilities ``softmax(x W^T + b)`` ``(batch, n_classes)`` float32.

    ``x`` ``(batch, n_columns)`` is cut or zero-padded to ``weights`` ``(c, width)``; classes
    beyond ``c`` get logit 0 (:mod:`streamcl.learning.linear`).
    """
    width = weights.shape[1]
    if x.shape[1] > width:
        x = x[:, :width]
    elif x.shape[1] < width:
        x = pad_columns(x, width)
    if len(bias) == n_classes:  # the usual case: no copy, no padding
        logits = x @ weights.T
        logits += bias
        return softmax(logits)
    logits = np.zeros((len(x), n_classes), dtype=np.float32)
    c = min(n_classes, len(bias))
    logits[:, :c] = x @ weights[:c].T + bias[:c]
    return softmax(logits)


def _forward(flat: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MLP outputs and last hidden features from ``[weight, bias, ...]`` float32 arrays.

    Inputs are zero-padded or cut to the first layer's width.
    """
    width = flat[0].shape[1]
    if x.shape[1] < width:
        x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    x = np.ascontiguousarray(x[:, :width])
    out, acts = forward(flat, x)
    return out, acts[-1] if acts else x


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of what serving needs to predict (see the module docstring).

    Attributes
    ----------
    features : FeatureView
        Frozen column map, scaler statistics and recent labels.
    params : tuple[tuple[torch.Tensor, torch.Tensor], ...]
        ``(weight, bias)`` of each layer, hidden layers then head; detached copies (the EMA
        weights when ``learner.ema_decay > 0``).
    classes : tuple
        Class labels, in output-unit order.
    version : int
        Number of learning steps taken when the snapshot was made.
    task : str
        ``"classification"`` or ``"regression"``.
    weights : dict[str, float]
        Hedge weights of the predictors.
    memory_keys, memory_targets : numpy.ndarray or None
        Read-only copies of the kNN memory ``(size, width)`` float32 and ``(size,)``.
    k : int
        Neighbours in the kNN vote.
    prototypes : tuple or None
        ``(means (n_classes, width) float32, counts (n_classes,) int64, temperature)``.
    target_scale : tuple[float, float]
        ``(mean, std)`` of a regression target: network outputs are standardised values.
    space : str
        Key space of the kNN memory, ``"input"`` or ``"embedding"`` (last hidden layer).
    recent : tuple or None
        ``(keys, targets)`` read-only copies of the short-term kNN memory (same key space).
    temporal : numpy.ndarray or None
        The temporal expert's output for the next event
        (:mod:`streamcl.learning.temporal`): ``(n_classes,)`` probabilities given the last
        label, or ``(1,)`` the last value (regression).
    linear : tuple or None
        ``(weights (n_classes, width) float32, bias (n_classes,) float32)`` of the linear
        expert (:mod:`streamcl.learning.linear`).
    tree : tuple or None
        ``(arrays, depth)`` of the tree expert (:mod:`streamcl.learning.tree`): the arrays
        of :func:`~streamcl.models.kernels.tree_proba` and the depth to walk.
    calibration : dict[str, float]
        Inverse temperature of each expert's class probabilities, applied before the
        mixture (:func:`calibrate`; :mod:`streamcl.learning.calibration`); absent: 1.
    """

    features: FeatureView
    params: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    classes: tuple[Label, ...]
    version: int
    task: str = "classification"
    weights: dict[str, float] = field(default_factory=lambda: {"mlp": 1.0})
    memory_keys: np.ndarray | None = None
    memory_targets: np.ndarray | None = None
    k: int = 10
    prototypes: tuple[np.ndarray, np.ndarray, float] | None = None
    target_scale: tuple[float, float] = (0.0, 1.0)
    space: str = "input"
    recent: tuple[np.ndarray, np.ndarray] | None = None
    temporal: np.ndarray | None = None
    linear: tuple[np.ndarray, np.ndarray] | None = None
    tree: tuple[tuple[np.ndarray, ...], int] | None = None
    calibration: dict[str, float] = field(default_factory=dict)

    @property
    def schema(self) -> FeatureSchema:
        """The feature kinds this snapshot learned, which inputs are checked against."""
        return self.features.schema

    @functools.cached_property
    def arrays(self) -> list[np.ndarray]:
        """:attr:`params` as numpy views ``[weight, bias, ...]``, made once per snapshot.

        ``Tensor.numpy()`` costs about 10 us a call, a third of a one-row forward pass.
        """
        return [t.numpy() for pair in self.params for t in pair]

    @functools.cached_property
    def tree_lists(self) -> tuple[list[Any], ...] | None:
        """The tree expert's arrays as Python lists (:func:`tree_lists`), made once."""
        return None if self.tree is None else tree_lists(self.tree[0])

    def predict(self, events: Sequence[Event]) -> list[Prediction]:
        """Predict ``events`` (unknown features ignored); thread-safe, no side effects."""
        regression = self.task == "regression"
        if not self.params or (not regression and not self.classes):
            return [Prediction(None, {}) for _ in events]
        x = self.features.transform(events)
        n = len(self.classes)
        logits, embedding = _forward(self.arrays, x)
        parts: dict[str, np.ndarray] = {}
        if regression:
            mean, std = self.target_scale
            parts["mlp"] = logits[:, 0].astype(np.float64) * std + mean
        else:
            parts["mlp"] = softmax(logits[:, :n])
        keys = x if self.space == "input" else embedding
        if self.memory_keys is not None and len(self.memory_keys) and "knn" in self.weights:
            d, i = knn_search(self.memory_keys, keys, self.k)
            assert self.memory_targets is not None
            parts["knn"] = vote(d, self.memory_targets[i], n, regression)
        if self.recent is not None and len(self.recent[0]) and "recent" in self.weights:
            d, i = knn_search(self.recent[0], keys, self.k)
            parts["recent"] = vote(d, self.recent[1][i], n, regression)
        if self.prototypes is not None and not regression and "prototypes" in self.weights:
            means, counts, temperature = self.prototypes
            parts["prototypes"] = ncm_proba(x, means, counts, temperature, n)
        if self.temporal is not None and "temporal" in self.weights:
            t = self.temporal
            parts["temporal"] = np.full(len(x), t[0]) if regression else np.tile(t, (len(x), 1))
        if self.linear is not None and not regression and "linear" in self.weights:
            parts["linear"] = linear_proba(x, self.linear[0], self.linear[1], n)
        if self.tree is not None and not regression and "tree" in self.weights:
            parts["tree"] = tree_proba(self.tree[0], x, n, self.tree[1], self.tree_lists)
        if self.calibration and not regression:
            parts = calibrate(parts, self.calibration)
        out = combine(parts, self.weights)
        if regression:
            return [Prediction(float(v), {}) for v in out.tolist()]
        return to_predictions(out, self.classes)
