"""Experience replay: a reservoir of past rows mixed into every training step.

References
----------
Chaudhry, A. et al. (2019). On tiny episodic memories in continual learning.
    arXiv:1902.10486. (Experience replay from a small reservoir, mixed into each batch.)
Vitter, J. S. (1985). Random sampling with a reservoir. ACM TOMS 11(1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamcl.learning.prototypes import pad_columns

__all__ = ["ReplayBuffer"]

#: Batches up to this size draw algorithm R's numbers one scalar call per row.
_SCALAR_DRAWS = 4


class ReplayBuffer:
    """Reservoir of past ``(x, target)`` rows replayed into every training step.

    Parameters
    ----------
    capacity
        Most rows kept.
    balanced
        Class-balanced reservoir: when full, a new row replaces a random row of the
        currently largest class (classification only); otherwise algorithm R.
    seed
        Seed of the buffer's generator (insertions and sampling).
    """

    def __init__(self, capacity: int = 2_000, balanced: bool = False, seed: int = 0) -> None:
        self.capacity = capacity
        self.balanced = balanced
        self.seed = seed
        self.x = np.zeros((capacity, 0), dtype=np.float32)
        self.y = np.zeros(capacity, dtype=np.float64)
        self.times = np.zeros(capacity, dtype=np.int64)
        self.size = 0
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self.x.nbytes + self.y.nbytes)

    def add(self, x: np.ndarray, y: np.ndarray, time: int | np.ndarray = 0) -> None:
        """Offer rows ``x`` ``(batch, width)`` float32 with targets ``y`` ``(batch,)``.

        ``time`` is the stream offset of each row, ``(batch,)`` int64, or one offset for
        the whole batch (for :meth:`forget_before`).
        """
        times = np.asarray(time, dtype=np.int64)
        if times.shape != (len(x),):  # one offset for the batch (np.broadcast_to is slow)
            times = np.broadcast_to(times, (len(x),))
        if x.shape[1] > self.x.shape[1]:
            self.x = pad_columns(self.x, x.shape[1])
        y = np.asarray(y, dtype=np.float64)
        if not self.balanced:  # algorithm R, vectorised over the batch
            draw = self._draws(len(x))
            free = self.capacity - self.size
            if free >= len(x):  # the rows take the next free slots (the draws go unused)
                a, b = self.size, self.size + len(x)
                self.seen += len(x)
                self.size = b
                if x.shape[1] < self.x.shape[1]:
                    self.x[a:b] = 0.0
                self.x[a:b, : x.shape[1]] = x
                self.y[a:b] = y
                self.times[a:b] = times
                return
            slots = np.where(draw < self.capacity, draw, -1)  # a full buffer's slot, or none
            if free > 0:  # rows take the free slots first, in order
                slots[:free] = np.arange(self.size, self.size + min(free, len(x)))
            self.seen += len(x)
            self.size = min(self.capacity, self.size + len(x))
            kept = np.flatnonzero(slots >= 0)
            if len(kept) < len(slots):
                slots, x, y, times = slots[kept], x[kept], y[kept], times[kept]
            # later rows win a slot drawn twice, as in the sequential algorithm
            if x.shape[1] < self.x.shape[1]:
                self.x[slots] = 0.0
            self.x[slots, : x.shape[1]] = x
            self.y[slots] = y
            self.times[slots] = times
            return
        for row, target, t in zip(x, y, times.tolist(), strict=True):
            self.seen += 1
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            elif self.balanced:
                values, counts = np.unique(self.y[: self.size], return_counts=True)
                pool = np.flatnonzero(self.y[: self.size] == values[np.argmax(counts)])
                if (
                    target == values[np.argmax(counts)]
                    and self.rng.random() > self.capacity / self.seen
                ):
                    continue
                slot = int(pool[self.rng.integers(len(pool))])
            else:
                r = int(self.rng.integers(0, self.seen))
                if r >= self.capacity:
                    continue
                slot = r
            self.x[slot, : len(row)] = row
            self.x[slot, len(row) :] = 0.0
            self.y[slot] = target
            self.times[slot] = t

    def _draws(self, n: int) -> np.ndarray:
        """Algorithm R's draws ``(n,)`` int64 for the next ``n`` rows: ``integers(0, seen)``.

        A few rows draw one scalar each (~1 us against ~4 us for the array call): the
        generator gives the same numbers either way, one bounded draw per row.
        """
        if n <= _SCALAR_DRAWS:
            integers, seen = self.rng.integers, self.seen
            return np.array([integers(0, seen + j) for j in range(1, n + 1)], dtype=np.int64)
        return self.rng.integers(0, self.seen + 1 + np.arange(n))

    def forget_before(self, time: int) -> int:
        """Drop rows added before ``time``; returns how many were dropped."""
        keep = np.flatnonzero(self.times[: self.size] >= time)
        dropped = self.size - len(keep)
        if dropped:
            n = len(keep)
            self.x[:n], self.y[:n], self.times[:n] = self.x[keep], self.y[keep], self.times[keep]
            self.size = n
        return dropped

    def sample(self, n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` rows uniformly with replacement.

        Returns ``(x (n', width) float32, y (n',))`` with ``n' = min(n, size)``.
        """
        m = min(n, self.size)
        idx = self.rng.integers(0, self.size, size=m) if m else np.zeros(0, dtype=np.int64)
        x = pad_columns(self.x[idx], width)[:, :width]
        return x, self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        """Arrays and plain values."""
        return {
            "x": self.x[: self.size].copy(),
            "y": self.y[: self.size].copy(),
            "times": self.times[: self.size].copy(),
            "width": int(self.x.shape[1]),
            "seen": self.seen,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        n = len(state["x"])
        self.x = np.zeros((self.capacity, int(state["width"])), dtype=np.float32)
        self.x[:n] = state["x"]
        self.y = np.zeros(self.capacity, dtype=np.float64)
        self.y[:n] = state["y"]
        self.times = np.zeros(self.capacity, dtype=np.int64)
        self.times[:n] = state["times"]
        self.size, self.seen = n, int(state["seen"])
        self.rng.bit_generator.state = state["rng"]
