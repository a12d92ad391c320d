"""The quality gate: a candidate version is scored against the served one before promotion.

Champion/challenger on the same events (the shadow evaluation of online-serving systems):
both the served version (champion) and the candidate snapshot predict each labelled event
that arrives after the candidate was made, before the learner learns it, so neither has
seen the labels it is scored on. After ``window`` such events the candidate is promoted
unless its accuracy is lower than the champion's by more than ``margin`` (classification)
or its MAE higher by more than the fraction ``margin`` (regression).

A candidate made during a spell of wrong labels has learned them: scored on the correct
labels that follow, it loses and is held. After a real drift the new concept persists, the
adapting candidate beats the stale champion on it, and is promoted.

References
----------
Gama, J., Sebastiao, R. & Rodrigues, P. P. (2013). On evaluating stream learning
    algorithms. Machine Learning 90(3). (Prequential comparison of two models on the same
    stream.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamcl.events import Event
from streamcl.models.predictor import Snapshot

__all__ = ["Decision", "ShadowGate"]


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate.

    Attributes
    ----------
    promote : bool
        True to promote, False to hold.
    reason : str
        Why (``"scored"``, ``"worse by 0.12 accuracy"``...).
    scores : dict
        ``{"events", "champion", "candidate", "metric"}``.
    """

    promote: bool
    reason: str
    scores: dict[str, Any]


class ShadowGate:
    """Scores a pending candidate and the champion on the same new labelled events.

    Parameters
    ----------
    window
        Labelled events scored before deciding; 0 promotes every candidate at once.
    margin
        Largest tolerated loss: accuracy points, or a fraction of the champion's MAE.
    regression
        Score by absolute error instead of 0/1 error.
    """

    def __init__(self, window: int, margin: float, regression: bool = False) -> None:
        self.window = window
        self.margin = margin
        self.regression = regression
        self.champion: Snapshot | None = None
        self.candidate: Snapshot | None = None
        self._errors = [0.0, 0.0]  # champion, candidate
        self._n = 0

    @property
    def pending(self) -> bool:
        """A candidate is being scored."""
        return self.candidate is not None

    def start(self, candidate: Snapshot) -> Decision | None:
        """Begin scoring ``candidate``; an immediate decision without a champion or window."""
        if self.champion is None or self.window == 0:
            return Decision(True, "no champion" if self.champion is None else "ungated", {})
        self.candidate = candidate
        self._errors = [0.0, 0.0]
        self._n = 0
        return None

    def observe(self, events: Sequence[Event]) -> None:
        """Score both on the labelled ``events`` (call before the learner learns them)."""
        if self.candidate is None or self.champion is None:
            return
        labelled = [e for e in events if e.label is not None]
        if not labelled:
            return
        for slot, model in enumerate((self.champion, self.candidate)):
            for event, p in zip(labelled, model.predict(labelled), strict=True):
                self._errors[slot] += self._error(p.label, event.label)
        self._n += len(labelled)

    def _error(self, predicted: Any, label: Any) -> float:
        if self.regression:
            return abs(float(predicted) - float(label)) if predicted is not None else 0.0
        return 0.0 if predicted == label else 1.0

    def decide(self, force: bool = False) -> Decision | None:
        """The verdict once ``window`` events are scored (or now with ``force``), else None.

        A forced decision with no scored event promotes (nothing says the candidate is worse).
        """
        if self.candidate is None or (self._n < self.window and not force):
            return None
        n = max(self._n, 1)
        champ, cand = self._errors[0] / n, self._errors[1] / n
        self.candidate = None
        if self._n == 0:
            return Decision(True, "no labelled events to score", {"events": 0})
        scores: dict[str, Any]
        if self.regression:
            metric, worse = "mae", cand > champ * (1 + self.margin) + 1e-12
            scores = {"champion": champ, "candidate": cand}
            detail = f"MAE {cand:.4g} vs served {champ:.4g}"
        else:
            metric, worse = "accuracy", (1 - cand) < (1 - champ) - self.margin
            scores = {"champion": 1 - champ, "candidate": 1 - cand}
            detail = f"accuracy {1 - cand:.4f} vs served {1 - champ:.4f}"
        scores = {"events": self._n, "metric": metric, **scores}
        if worse:
            return Decision(False, f"worse than the served version: {detail}", scores)
        return Decision(True, f"scored: {detail}", scores)
