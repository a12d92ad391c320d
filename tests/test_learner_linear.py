"""The linear expert: online softmax regression that wins the mixture on linear concepts."""

from __future__ import annotations

import dataclasses

import numpy as np
from streams import accuracy, as_events

from streamcl.events import Event
from streamcl.learning.learner import Learner
from streamcl.learning.linear import SoftmaxRegression
from streamcl.models.version import decode_version, encode_version
from streamcl.settings import LearnerSettings


def _hyperplane(n: int, d: int = 20, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d))
    y = (x @ w > 0).astype(int)
    return as_events(x, y)


def test_softmax_regression_learns_a_linear_rule_and_grows() -> None:
    rng = np.random.default_rng(1)
    model = SoftmaxRegression(lr=0.05)
    assert not model.ready
    x = rng.normal(size=(2_000, 3)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    for i in range(0, 1_000, 16):
        model.learn(x[i : i + 16, :2], y[i : i + 16], 2)  # the third column appears later
    for i in range(1_000, 2_000, 16):
        model.learn(x[i : i + 16], y[i : i + 16], 3)  # and a third class (never seen)
    assert model.weights.shape == (3, 3) and model.bias.shape == (3,)
    p = model.predict(x[:500], 3)
    assert p.dtype == np.float32 and np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == y[:500]).mean() > 0.95
    assert p[:, 2].max() < 0.05


def test_the_mixture_follows_the_linear_expert_on_a_linear_concept() -> None:
    events = _hyperplane(2_000)
    # The micro-batch and warm-up of 32 / 128 events: with the defaults (64 / 1,024) the
    # network takes many more small steps over these first 1,000 events and is as good as
    # the linear expert by then (Hedge weights 0.56 / 0.44 at event 1,000).
    old = {"batch_size": 32, "warmup": 128}
    with_linear, without = (
        Learner(LearnerSettings(**old)),
        Learner(LearnerSettings(linear=False, **old)),
    )
    # Over the first 1,000 events the linear expert learns the rule sooner: the Hedge
    # weights follow it there (with linear_lr 0.01 the network catches up later, and the
    # weights may then prefer it), and the mixture is more accurate for it.
    led, correct = [], []
    for i in range(0, 1_000, 32):
        batch = events[i : i + 32]
        predicted = with_linear.predict_learn(batch)
        correct += [p.label == e.label for p, e in zip(predicted, batch, strict=True)]
        w = with_linear.weights()
        led.append(w.get("linear", 0.0) == max(w.values()))
    acc_with, acc_without = float(np.mean(correct)), accuracy(without, events[:1_000], 0)
    assert np.mean(led) > 0.75, np.mean(led)
    assert acc_with > acc_without + 0.02, (acc_with, acc_without)


def test_a_published_version_carries_the_linear_expert() -> None:
    learner = Learner(LearnerSettings())
    accuracy(learner, _hyperplane(300))
    snapshot = learner.snapshot()
    assert snapshot.linear is not None and "linear" in snapshot.weights
    data, sha = encode_version(snapshot, 1, "m", 0.0, {})
    loaded = decode_version(data, {}, sha)
    probe = [Event(id=e.id, features=e.features) for e in _hyperplane(50, seed=2)]
    want, got = snapshot.predict(probe), loaded.predict(probe)
    a = np.array([list(p.probabilities.values()) for p in want])
    b = np.array([list(p.probabilities.values()) for p in got])
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    # without the linear expert's state the replica would predict something else
    alone = dataclasses.replace(snapshot, linear=None)
    c = np.array([list(p.probabilities.values()) for p in alone.predict(probe)])
    assert np.abs(a - c).max() > 1e-3
