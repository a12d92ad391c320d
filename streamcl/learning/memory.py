"""Episodic memory of the learner: a FAISS kNN memory, class prototypes, a replay buffer.

The kNN memory lives here; class prototypes are in :mod:`streamcl.learning.prototypes`, the
replay buffer in :mod:`streamcl.learning.rehearsal` and the in-batch neighbours in
:mod:`streamcl.learning.neighbours` (all re-exported). Every structure stores plain
numpy arrays that it owns; :meth:`state_dict` returns numpy
arrays and JSON-able values only (no pickled objects), and :meth:`copy_arrays` gives an
immutable copy that serving snapshots search without touching the live structure.

Feature columns are discovered online, so the key width only grows: stored keys are padded
with zeros (a new column is 0 for every old entry, which is also what the featurizer gives
an event that lacks the feature).

References
----------
Prabhu, A. et al. (2023). Online continual learning without the storage constraint.
    arXiv:2305.09253. (kNN over a growing memory; forget what precedes a drift.)
Chaudhry, A. et al. (2019). On tiny episodic memories in continual learning.
    arXiv:1902.10486. (Experience replay from a small reservoir, mixed into each batch.)
Losing, V., Hammer, B. & Wersing, H. (2016). KNN classifier with self adjusting memory for
    heterogeneous concept drift. ICDM 2016. (A short-term memory of the latest events
    beside a long-term one, each a kNN predictor, the better one trusted.)
Rebuffi, S.-A. et al. (2017). iCaRL: incremental classifier and representation learning.
    CVPR 2017. (Nearest-class-mean classification on class prototypes.)
Vitter, J. S. (1985). Random sampling with a reservoir. ACM TOMS 11(1).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from streamcl.learning.neighbours import batch_neighbours, merge_neighbours
from streamcl.learning.prototypes import Prototypes
from streamcl.learning.rehearsal import ReplayBuffer
from streamcl.models.kernels import knn_search, ncm_proba, pad_columns, vote

__all__ = [
    "KNNMemory",
    "Prototypes",
    "ReplayBuffer",
    "batch_neighbours",
    "knn_search",
    "ncm_proba",
    "vote",
]


def _per_row(time: int | np.ndarray, n: int) -> np.ndarray:
    """Stream offsets ``(n,)`` int64 from one offset or an array of them (not copied)."""
    times = np.asarray(time, dtype=np.int64)
    # np.broadcast_to costs ~4 us of Python; the usual argument needs none
    return times if times.shape == (n,) else np.broadcast_to(times, (n,))


class KNNMemory:
    """Bounded kNN memory of ``(key, target, time)`` entries, searched with FAISS.

    Parameters
    ----------
    capacity
        Most entries kept.
    k
        Neighbours in the vote.
    eviction
        ``"fifo"``: a sliding window (oldest out); ``"reservoir"``: a uniform sample of the
        whole stream (Vitter's algorithm R); ``"class_balanced"``: each class keeps at most
        ``capacity // n_classes`` entries, evicting its own oldest (classification only).
    hnsw_threshold
        At or above this many entries searches use an approximate HNSW index (M=32),
        rebuilt when a quarter of its rows are stale; below it, exact brute force.
    regression
        Targets are float values instead of class indices.
    seed
        Seed of the reservoir's generator.

    Attributes
    ----------
    keys : numpy.ndarray
        ``(capacity, width)`` float32; rows ``[:size]`` are valid.
    targets : numpy.ndarray
        ``(capacity,)`` float64 class index or value.
    times : numpy.ndarray
        ``(capacity,)`` int64 event counter when the entry was added.
    """

    def __init__(
        self,
        capacity: int = 2_000,
        k: int = 10,
        eviction: str = "fifo",
        hnsw_threshold: int = 50_000,
        regression: bool = False,
        seed: int = 0,
    ) -> None:
        self.capacity = capacity
        self.k = k
        self.eviction = eviction
        self.hnsw_threshold = hnsw_threshold
        self.regression = regression
        self.seed = seed
        # FAISS's thread count and BLAS threshold are set once in streamcl.models.kernels.
        self._reset()

    def _reset(self) -> None:
        self.keys = np.zeros((self.capacity, 0), dtype=np.float32)
        self.targets = np.zeros(self.capacity, dtype=np.float64)
        self.times = np.zeros(self.capacity, dtype=np.int64)
        self.size = 0
        self.seen = 0
        self._next = 0  # FIFO ring position
        self.rng = np.random.default_rng(self.seed)
        self._hnsw: Any = None
        self._stale = 0

    @property
    def width(self) -> int:
        """Key width (columns)."""
        return int(self.keys.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and the HNSW index (approximate for the index)."""
        extra = 0 if self._hnsw is None else self._hnsw.ntotal * (self.width * 4 + 32 * 8)
        return int(self.keys.nbytes + self.targets.nbytes + self.times.nbytes + extra)

    def _slots(self, targets: np.ndarray) -> np.ndarray:
        """Slot of each new entry (``-1``: not kept), advancing the eviction state."""
        if self.eviction == "fifo":
            return self._fifo_slots(len(targets))
        slots = np.empty(len(targets), dtype=np.int64)
        for j, y in enumerate(targets):
            self.seen += 1
            if self.size < self.capacity and self.eviction != "class_balanced":
                slots[j] = self.size
                self.size += 1
            elif self.eviction == "fifo":
                slots[j] = self._next
                self._next = (self._next + 1) % self.capacity
            elif self.eviction == "reservoir":
                r = int(self.rng.integers(0, self.seen))
                slots[j] = r if r < self.capacity else -1
            else:
                slots[j] = self._balanced_slot(float(y))
        return slots

    def _fifo_slots(self, n: int) -> np.ndarray:
        """``_slots`` for FIFO eviction, vectorised: free slots first, then the ring."""
        fill = min(n, self.capacity - self.size)
        if fill == 0 and self._next + n <= self.capacity:  # full, no wrap-around: the usual
            slots = np.arange(self._next, self._next + n)
        else:
            ring = (self._next + np.arange(n - fill)) % self.capacity
            slots = np.concatenate([np.arange(self.size, self.size + fill), ring])
        self.seen += n
        self.size += fill
        self._next = (self._next + n - fill) % self.capacity
        return slots

    def _balanced_slot(self, y: float) -> int:
        if self.size < self.capacity:
            self.size += 1
            return self.size - 1
        live = self.targets[: self.size]
        values, counts = np.unique(live, return_counts=True)
        quota = self.capacity // max(len(values) + (y not in values), 1)
        own = np.flatnonzero(live == y)
        if len(own) >= quota and len(own):
            return int(own[np.argmin(self.times[own])])
        biggest = values[np.argmax(counts)]
        pool = np.flatnonzero(live == biggest)
        return int(pool[np.argmin(self.times[pool])])

    def add(self, keys: np.ndarray, targets: np.ndarray, time: int | np.ndarray) -> None:
        """Insert entries.

        Parameters
        ----------
        keys
            ``(batch, width)`` float32 (wider than before: old keys are zero-padded).
        targets
            ``(batch,)`` class indices or values.
        time
            Stream offset of each entry, ``(batch,)`` int64, or one offset for the whole
            batch (used by :meth:`forget_before`).
        """
        if len(keys) == 0:
            return
        if keys.shape[1] > self.width:
            self.keys = pad_columns(self.keys, keys.shape[1])
            self._hnsw = None
        targets = np.asarray(targets, dtype=np.float64)
        times = _per_row(time, len(targets))
        slots = self._slots(targets)
        if self.eviction == "reservoir" and (slots < 0).any():  # entries passed over
            keep = slots >= 0
            keys, targets, times, slots = keys[keep], targets[keep], times[keep], slots[keep]
        width = keys.shape[1]
        self.keys[slots, :width] = keys
        if width < self.width:
            self.keys[slots, width:] = 0.0
        self.targets[slots] = targets
        self.times[slots] = times
        self._update_hnsw(slots)

    def _update_hnsw(self, slots: np.ndarray) -> None:
        if self.size < self.hnsw_threshold:
            self._hnsw = None
            return
        if self._hnsw is None or self._stale > self._hnsw.ntotal // 4:
            self._build_hnsw()
            return
        new = slots[slots >= self._hnsw.ntotal]
        self._stale += len(slots) - len(new)
        if len(new):  # new rows are appended in slot order while the memory fills
            # FAISS does not serialise HNSW's level generator: reseed it from plain data so
            # a restored index links new entries exactly as the original would.
            rng = faiss.RandomGenerator(self.seed + int(self._hnsw.ntotal))  # type: ignore[attr-defined]
            self._hnsw.hnsw.rng = rng
            self._hnsw.add(self.keys[new])

    def rebuild(self) -> None:
        """Rebuild the approximate index after keys were changed in place (if one is used)."""
        self._hnsw = None
        self._update_hnsw(np.arange(0))

    def _build_hnsw(self) -> None:
        index = faiss.IndexHNSWFlat(self.width, 32)
        index.hnsw.efSearch = 64
        index.hnsw.rng = faiss.RandomGenerator(self.seed)  # type: ignore[attr-defined]
        index.add(self.keys[: self.size])
        self._hnsw, self._stale = index, 0

    def search(self, queries: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest entries of ``queries`` ``(batch, d)`` float32.

        Returns
        -------
        distances, indices : numpy.ndarray
            ``(batch, k')`` squared L2 distances (float32) and row indices (int64),
            ``k' = min(k, size)``. HNSW candidates are re-ranked with exact distances to
            the current keys, so overwritten (stale) rows cannot mislead the vote.

        Raises
        ------
        ValueError
            The memory is empty.
        """
        if self.size == 0:
            raise ValueError("the kNN memory is empty")
        k = self.k if k is None else k
        if self._hnsw is None:  # knn_search pads or cuts the queries to the key width
            return knn_search(self.keys[: self.size], queries, k)
        q = np.ascontiguousarray(
            pad_columns(queries.astype(np.float32, copy=False), self.width)[:, : self.width]
        )
        _, cand = self._hnsw.search(q, min(2 * k, self.size))
        cand = np.where(cand < 0, 0, cand)
        d = ((self.keys[cand] - q[:, None, :]) ** 2).sum(-1)
        order = np.argsort(d, axis=1)[:, : min(k, self.size)]
        return np.take_along_axis(d, order, 1).astype(np.float32), np.take_along_axis(
            cand, order, 1
        )

    def predict(
        self,
        queries: np.ndarray,
        n_classes: int,
        batch: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vote of the nearest entries: ``(probabilities or values, nearest distance)``.

        Parameters
        ----------
        queries
            ``(batch, d)`` float32 keys.
        n_classes
            Output width for classification.
        batch
            :func:`batch_neighbours` of the queries: their earlier labelled events join
            the vote (the ``k`` nearest of memory and batch are kept).

        Returns
        -------
        votes : numpy.ndarray
            ``(batch, n_classes)`` float32 probabilities, or ``(batch,)`` values.
        nearest : numpy.ndarray
            ``(batch,)`` float32 L2 distance to the nearest entry (an input-drift signal).
        """
        d, i = self.search(queries)
        nearest = np.sqrt(d[:, 0])
        targets = self.targets[i]
        if batch is not None:
            d, targets = merge_neighbours(d, targets, batch[0], batch[1], self.k)
        return vote(d, targets, n_classes, self.regression), nearest

    def forget_before(self, time: int, min_size: int = 0) -> int:
        """Drop entries added before stream offset ``time``.

        The newest of them are kept if fewer than ``min_size`` entries would remain.

        Returns
        -------
        int
            Entries removed.
        """
        old = np.flatnonzero(self.times[: self.size] < time)
        keep = max(min_size - (self.size - len(old)), 0)
        if keep:
            old = old[np.argsort(self.times[old])][: max(len(old) - keep, 0)]
        if not len(old):
            return 0
        mask = np.ones(self.size, dtype=bool)
        mask[old] = False
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(self.times[rows], kind="stable")]  # oldest first: FIFO resumes
        n = len(rows)
        for name in ("keys", "targets", "times"):
            a = getattr(self, name)
            a[:n] = a[rows]
        self.size, self._next, self._hnsw = n, 0, None
        self._update_hnsw(np.arange(0))
        return len(old)

    def copy_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Read-only copies ``(keys (size, width) float32, targets (size,))`` for serving."""
        keys, targets = self.keys[: self.size].copy(), self.targets[: self.size].copy()
        keys.flags.writeable = False
        targets.flags.writeable = False
        return keys, targets

    def state_dict(self) -> dict[str, Any]:
        """Arrays and plain values; the HNSW index (if any) as ``faiss.serialize_index`` bytes."""
        return {
            "keys": self.keys[: self.size].copy(),
            "targets": self.targets[: self.size].copy(),
            "times": self.times[: self.size].copy(),
            "width": self.width,
            "seen": self.seen,
            "next": self._next,
            "stale": self._stale,
            "rng": self.rng.bit_generator.state,
            "hnsw": None if self._hnsw is None else faiss.serialize_index(self._hnsw),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (capacity and policy come from ``__init__``)."""
        self._reset()
        n = len(state["keys"])
        self.keys = np.zeros((self.capacity, int(state["width"])), dtype=np.float32)
        self.keys[:n] = state["keys"]
        self.targets[:n] = state["targets"]
        self.times[:n] = state["times"]
        self.size, self.seen, self._next = n, int(state["seen"]), int(state["next"])
        self._stale = int(state["stale"])
        self.rng.bit_generator.state = state["rng"]
        if state["hnsw"] is not None:
            self._hnsw = faiss.deserialize_index(np.asarray(state["hnsw"], dtype=np.uint8))
