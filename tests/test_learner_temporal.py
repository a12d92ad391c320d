"""The temporal expert: weight where labels are autocorrelated, none where they are not."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from sources import elec2_rows

from streamcl.events import Event
from streamcl.learning.learner import Learner
from streamcl.learning.temporal import LabelTransitions
from streamcl.models.predictor import Snapshot
from streamcl.settings import LearnerSettings


def _events(labels: np.ndarray, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    return [
        Event(
            id=str(i), features={"a": float(rng.normal()), "b": float(rng.normal())}, label=int(y)
        )
        for i, y in enumerate(labels)
    ]


def _accuracy(learner: Learner, events: list[Event]) -> float:
    correct = []
    for i in range(0, len(events), 32):
        batch = events[i : i + 32]
        correct += [
            p.label == e.label for p, e in zip(learner.predict_learn(batch), batch, strict=True)
        ]
    return float(np.mean(correct[200:]))


def test_sticky_labels_with_noise_features_are_predicted_from_the_previous_label() -> None:
    rng = np.random.default_rng(1)
    labels = np.cumsum(rng.random(1_500) < 0.05) % 4  # runs of ~20 events, 4 classes
    with_expert = Learner(LearnerSettings(label_lags=0))
    without = Learner(LearnerSettings(label_lags=0, temporal=False))
    events = _events(labels)
    assert _accuracy(with_expert, events) > 0.9
    assert _accuracy(without, events) < 0.6
    assert with_expert.weights()["temporal"] > 0.5


def test_independent_labels_give_the_expert_little_weight() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1_500, 2))
    labels = (x[:, 0] > 0).astype(int)
    events = [
        Event(id=str(i), features={"a": float(a), "b": float(b)}, label=int(y))
        for i, ((a, b), y) in enumerate(zip(x, labels, strict=True))
    ]
    learner = Learner(LearnerSettings(label_lags=0))
    assert _accuracy(learner, events) > 0.9
    assert learner.weights()["temporal"] < 0.1


def test_previous_label_inside_a_batch_is_the_last_known_one() -> None:
    t = LabelTransitions()
    t.learn(np.array([0.0, 1.0, 1.0]), 3)
    assert t.last == 1.0 and t.counts[1, 1] > 0 and t.counts[0, 1] > 0
    known = np.array([2.0, math.nan, 0.0, math.nan])
    assert t.previous(known).tolist() == [1.0, 2.0, 2.0, 0.0]
    p = t.predict(known, 3)
    assert p.shape == (4, 3) and np.allclose(p.sum(1), 1.0)
    assert p[0].argmax() == 1  # after 1, 1 followed most often


def test_regression_expert_predicts_the_previous_value() -> None:
    t = LabelTransitions(regression=True)
    t.learn(np.array([3.0, 5.0]), 0)
    assert t.predict(np.array([math.nan, 7.0, math.nan]), 0).tolist() == [5.0, 5.0, 7.0]


def test_a_served_version_leaves_the_stale_temporal_expert_out() -> None:
    # On elec2 after 2,000 events the learner leans on the temporal expert; a version serves
    # the next 500 events, over which the one label it saw last is stale.
    events = [
        Event(
            id=str(i),
            features={k: float(v) for k, v in r.items() if k != "class"},
            label=int(r["class"]),
        )
        for i, r in enumerate(elec2_rows(2500))
    ]
    learner = Learner(LearnerSettings())
    for i in range(0, 2000, 64):
        learner.predict_learn(events[i : i + 64])
    weight = learner.weights()["temporal"]
    assert weight > 0.3, weight
    snap = learner.snapshot()
    assert "temporal" not in snap.weights and snap.temporal is None
    assert learner.temporal is not None
    stale = replace(
        snap,
        weights={**snap.weights, "temporal": weight},
        temporal=learner.temporal.next_output(len(learner.classes)),
    )
    later = events[2000:]

    def accuracy(model: Snapshot) -> float:
        predicted = model.predict(later)
        return float(np.mean([p.label == e.label for p, e in zip(predicted, later, strict=True)]))

    assert accuracy(snap) > accuracy(stale) + 0.05, (accuracy(snap), accuracy(stale))
