"""Class prototypes: running class means and a nearest-class-mean classifier.

References
----------
Rebuffi, S.-A. et al. (2017). iCaRL: incremental classifier and representation learning.
    CVPR 2017. (Nearest-class-mean classification on class prototypes.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamcl.models.kernels import ncm_proba, pad_columns

__all__ = ["Prototypes", "ncm_proba", "pad_columns"]


class Prototypes:
    """Running class means and a nearest-class-mean (NCM) classifier.

    A class's prototype is an exponential moving average of its inputs, updated once per
    micro-batch with the batch's class mean; the weight of the past is
    ``min(decay ** k, n / (n + k))`` for ``k`` new and ``n`` earlier examples: a plain
    mean for the first ``1 / (1 - decay)`` examples, so a class seen once already has a
    prototype. Probabilities are
    ``softmax(-||x - mu_c||^2 / T)`` with ``T`` the running mean squared distance of
    examples to their own prototype (scale-free).

    Parameters
    ----------
    decay
        Upper bound of the weight of the past in each update, ``[0, 1)``.
    """

    def __init__(self, decay: float = 0.99) -> None:
        self.decay = decay
        self.means = np.zeros((0, 0), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.int64)
        self.temperature = 1.0

    def learn(self, x: np.ndarray, classes: np.ndarray, n_classes: int) -> None:
        """Update with ``x`` ``(batch, width)`` float32 of class indices ``(batch,)`` int."""
        if n_classes > len(self.means) or x.shape[1] > self.means.shape[1]:
            grown = np.zeros(
                (max(n_classes, len(self.means)), max(x.shape[1], self.means.shape[1])),
                dtype=np.float32,
            )
            grown[: self.means.shape[0], : self.means.shape[1]] = self.means
            counts = np.zeros(len(grown), dtype=np.int64)
            counts[: len(self.counts)] = self.counts
            self.means, self.counts = grown, counts
        x = pad_columns(x, self.means.shape[1])
        counts = np.bincount(classes, minlength=len(self.means))
        present = np.flatnonzero(counts)
        old = self.counts[classes] > 0
        if old.any():
            xo, co = (x, classes) if old.all() else (x[old], classes[old])
            d2 = np.add.reduce((xo - self.means[co]) ** 2, 1)
            mean = np.add.reduce(d2) / len(d2)  # d2.mean(), without its Python wrapper
            self.temperature = 0.9 * self.temperature + 0.1 * max(float(mean), 1e-6)
        onehot = np.zeros((len(x), len(self.means)), dtype=np.float32)
        onehot[np.arange(len(x)), classes] = 1.0
        sums = (onehot.T @ x).astype(np.float64)
        # every class in the batch (the usual case): a slice, cheaper than fancy indexing
        rows = slice(None) if len(present) == len(counts) else present
        k = counts[rows].astype(np.float64)
        n = self.counts[rows].astype(np.float64)
        past = np.minimum(self.decay**k, n / (n + k))[:, None]
        batch_mean = sums[rows] / k[:, None]
        self.means[rows] = (past * self.means[rows] + (1.0 - past) * batch_mean).astype(np.float32)
        self.counts[rows] += counts[rows]

    def predict(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """``(batch, n_classes)`` float32 NCM probabilities (uniform for unseen classes)."""
        return ncm_proba(x, self.means, self.counts, self.temperature, n_classes)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self.means.nbytes + self.counts.nbytes)

    def state_dict(self) -> dict[str, Any]:
        """Arrays and plain values."""
        return {
            "means": self.means.copy(),
            "counts": self.counts.copy(),
            "temperature": self.temperature,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.means = np.array(state["means"], dtype=np.float32)
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.temperature = float(state["temperature"])
