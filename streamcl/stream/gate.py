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

Snapshots carry no temporal expert (:func:`streamcl.learning.report.snapshot`): it would
predict every later event from the one label the snapshot saw last, equally stale for both
versions, and on a stream with autocorrelated labels the comparison would mostly say which
of the two happened to see the more frequent label last (on elec2 replayed at full speed,
27 of 67 candidates were held so, some at 0.31 against 0.64 accuracy, and the served
version aged past 2 s).

References
----------
Gama, J., Sebastiao, R. & Rodrigues, P. P. (2013). On evaluating stream learning
    algorithms. Machine Learning 90(3). (Prequential comparison of two models on the same
    stream.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass
class _Trial:
    """One candidate being scored against the champion of the time it started."""

    key: Any
    candidate: Snapshot
    champion: Snapshot
    started: float
    errors: list[float] = field(default_factory=lambda: [0.0, 0.0])  # champion, candidate
    n: int = 0


class ShadowGate:
    """Scores pending candidates and the champion on the same new labelled events.

    Several candidates may be scored at once (one started every publication interval, each
    for ``window`` events), so every candidate made during a spell of wrong labels is
    judged on the events after it, most of them correct when the spell is shorter than
    ``window / 2`` events.

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
        self.trials: list[_Trial] = []

    @property
    def pending(self) -> int:
        """Candidates being scored."""
        return len(self.trials)

    def start(self, key: Any, candidate: Snapshot) -> Decision | None:
        """Begin scoring ``candidate``; an immediate decision without a champion or window."""
        if self.champion is None or self.window == 0:
            return Decision(True, "no champion" if self.champion is None else "ungated", {})
        self.trials.append(_Trial(key, candidate, self.champion, time.monotonic()))
        return None

    def observe(self, events: Sequence[Event]) -> None:
        """Score every trial on the labelled ``events`` (call before the learner learns them)."""
        if not self.trials:
            return
        labelled = [e for e in events if e.label is not None]
        if not labelled:
            return
        by_champion: dict[int, list[float]] = {}
        for trial in self.trials:
            champ = by_champion.get(id(trial.champion))
            if champ is None:
                champ = by_champion[id(trial.champion)] = self._errors(trial.champion, labelled)
            trial.errors[0] += sum(champ)
            trial.errors[1] += sum(self._errors(trial.candidate, labelled))
            trial.n += len(labelled)

    def _errors(self, model: Snapshot, events: Sequence[Event]) -> list[float]:
        out = []
        for event, p in zip(events, model.predict(events), strict=True):
            if self.regression:
                out.append(abs(float(p.label) - float(event.label)) if p.label is not None else 0.0)  # type: ignore[arg-type]
            else:
                out.append(0.0 if p.label == event.label else 1.0)
        return out

    def decide(self, timeout_s: float | None = None) -> list[tuple[Any, Decision]]:
        """Verdicts of the trials that scored ``window`` events (or started ``timeout_s`` ago).

        Returned oldest first and removed from :attr:`trials`. A trial decided by the
        timeout with no scored event is promoted (nothing says it is worse).
        """
        now = time.monotonic()
        done = []
        while self.trials:
            t = self.trials[0]
            late = timeout_s is not None and now - t.started > timeout_s
            if t.n < self.window and not late:
                break
            self.trials.pop(0)
            done.append((t.key, self._verdict(t)))
        return done

    def _verdict(self, t: _Trial) -> Decision:
        if t.n == 0:
            return Decision(True, "no labelled events to score", {"events": 0})
        champ, cand = t.errors[0] / t.n, t.errors[1] / t.n
        scores: dict[str, Any]
        if self.regression:
            worse = cand > champ * (1 + self.margin) + 1e-12
            scores = {"metric": "mae", "champion": champ, "candidate": cand}
            detail = f"MAE {cand:.4g} vs served {champ:.4g}"
        else:
            worse = (1 - cand) < (1 - champ) - self.margin
            scores = {"metric": "accuracy", "champion": 1 - champ, "candidate": 1 - cand}
            detail = f"accuracy {1 - cand:.4f} vs served {1 - champ:.4f}"
        scores["events"] = t.n
        if worse:
            return Decision(False, f"worse than the served version: {detail}", scores)
        return Decision(True, f"scored: {detail}", scores)
