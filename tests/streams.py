"""Test helpers: synthetic rows as events, and a learner's prequential accuracy on them."""

from __future__ import annotations

import numpy as np

from streamcl.events import Event
from streamcl.learning.learner import Learner


def as_events(x: np.ndarray, y: np.ndarray) -> list[Event]:
    """Rows ``x`` ``(n, d)`` with labels ``y`` ``(n,)`` as events with features ``f0..``."""
    return [
        Event(id=str(i), features={f"f{j}": float(v) for j, v in enumerate(row)}, label=int(c))
        for i, (row, c) in enumerate(zip(x, y, strict=True))
    ]


def accuracy(
    learner: Learner, events: list[Event], start: int = -500, end: int | None = None
) -> float:
    """Test-then-train ``events`` in micro-batches of 32; accuracy over ``[start:end]``."""
    correct = []
    for i in range(0, len(events), 32):
        batch = events[i : i + 32]
        correct += [
            p.label == e.label for p, e in zip(learner.predict_learn(batch), batch, strict=True)
        ]
    return float(np.mean(correct[start:end]))
