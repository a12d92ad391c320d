"""The stability metrics the learner reports: windowed accuracy, its worst after a drift, recovery.

De Lange, M., van de Ven, G. M. & Tuytelaars, T. (2023). Continual evaluation for lifelong
learning: identifying the stability gap. ICLR 2023: the worst windowed accuracy after a
drift (the stability gap) and the events taken to recover the level before it.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

import numpy as np

from streamcl.learning.drift import bernoulli_split

__all__ = ["Recovery"]


class Recovery:
    """Windowed accuracy, worst accuracy after the last drift and events to recover.

    Parameters
    ----------
    window
        Events in the sliding accuracy window.

    Notes
    -----
    On a drift, the pre-drift level is the windowed accuracy recorded where the detector
    puts the change (``width`` events before detection, for ADWIN). After it, accuracy is
    measured over post-drift events only (at least 50); the worst such value is
    ``worst_window_accuracy_since_drift`` and the first time it is back within 0.02 of the
    pre-drift level gives ``recovery_events`` (De Lange et al. 2023).
    """

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self.recent: deque[bool] = deque(maxlen=window)
        self.correct = 0
        self.events = 0
        self.history: deque[tuple[int, float]] = deque(maxlen=256)
        self.pre_level: float | None = None
        self.drift_at = 0
        self.post: deque[bool] = deque(maxlen=window)
        self.worst: float | None = None
        self.recovery_events: int | None = None

    @property
    def accuracy(self) -> float:
        """Accuracy over the window (0 before any event)."""
        return self.correct / len(self.recent) if self.recent else 0.0

    def update(self, correct: np.ndarray) -> None:
        """Add per-event correctness ``(n,)`` bool, in stream order."""
        values = correct.tolist()
        over = len(self.recent) + len(values) - self.window
        if over > 0:
            self.correct -= sum(islice(self.recent, 0, min(over, len(self.recent))))
        self.recent.extend(values)
        self.correct += sum(values[-self.window :])
        if self.pre_level is not None and self.recovery_events is None:
            self.post.extend(values)
        self.events += len(correct)
        self.history.append((self.events, self.accuracy))
        if self.pre_level is not None and self.recovery_events is None and len(self.post) >= 50:
            acc = sum(self.post) / len(self.post)
            self.worst = acc if self.worst is None else min(self.worst, acc)
            if acc >= self.pre_level - 0.02:
                self.recovery_events = self.events - self.drift_at

    def change_age(self, limit: int) -> int:
        """Events since the most likely start of an error increase among the last ``limit``.

        The maximum-likelihood split of the recent 0/1 correctness into two Bernoulli
        segments with accuracy falling (:func:`~streamcl.learning.drift.bernoulli_split`); ADWIN's
        own window after a detection still holds much of the old concept, so the learner
        trims memories at this split instead.
        """
        recent = np.fromiter(self.recent, dtype=float)[-max(limit, 2) :]
        n = len(recent)
        if n < 4:
            return n
        s, before, after, gain = bernoulli_split(recent)
        return int(n - s[int(np.argmax(np.where(before > after, gain, -np.inf)))])

    def on_drift(self, width: int) -> None:
        """A drift was detected now; ``width`` events are estimated to follow the change."""
        level = self.accuracy
        for at, acc in reversed(self.history):
            if at <= self.events - width:
                level = acc
                break
        self.pre_level, self.drift_at, self.worst, self.recovery_events = (
            level,
            self.events,
            None,
            None,
        )
        self.post.clear()

    def summary(self) -> dict[str, Any]:
        """Plain numbers for ``summary()``."""
        return {
            "window_accuracy": self.accuracy,
            "worst_window_accuracy_since_drift": self.worst,
            "recovery_events": self.recovery_events,
            "pre_drift_accuracy": self.pre_level,
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "recent": list(self.recent),
            "events": self.events,
            "history": [list(h) for h in self.history],
            "pre_level": self.pre_level,
            "drift_at": self.drift_at,
            "post": list(self.post),
            "worst": self.worst,
            "recovery_events": self.recovery_events,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.recent = deque((bool(v) for v in state["recent"]), maxlen=self.window)
        self.correct = sum(self.recent)
        self.events = int(state["events"])
        self.history = deque(((int(a), float(b)) for a, b in state["history"]), maxlen=256)
        self.pre_level, self.drift_at = state["pre_level"], int(state["drift_at"])
        self.post = deque((bool(v) for v in state["post"]), maxlen=self.window)
        self.worst, self.recovery_events = state["worst"], state["recovery_events"]
