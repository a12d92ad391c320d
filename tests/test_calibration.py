"""Temperature scaling of the experts before the mixture: sharpen the hesitant, never soften."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from checks import stream

from streamcl.events import Event
from streamcl.learning.calibration import MAX_SCALE, Calibration
from streamcl.learning.learner import Learner
from streamcl.models.predictor import calibrate
from streamcl.models.version import decode_version, encode_version
from streamcl.settings import LearnerSettings


def _scores(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean log loss and Brier score of ``p`` ``(n, k)`` against ``y`` ``(n,)``."""
    picked = p[np.arange(len(y)), y]
    brier = (p * p).sum(1) - 2 * picked + 1
    return float(-np.log(picked).mean()), float(brier.mean())


def _hesitant(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An expert right 90% of the time that never says more than 0.6: ``(n, 2)``, ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    right = rng.random(n) < 0.9
    top = np.where(right, y, 1 - y)
    p = np.full((n, 2), 0.4, np.float32)
    p[np.arange(n), top] = 0.6
    return p, y


def _learn_hesitant(cal: Calibration, batches: int, n: int) -> None:
    """``batches`` steps of the linear expert's hesitant outputs, seeds 0, 1, ..."""
    for seed in range(batches):
        p, y = _hesitant(n, seed)
        cal.apply({"linear": p})
        cal.learn(list(range(n)), y)


def test_a_right_but_hesitant_expert_is_sharpened_and_scores_better() -> None:
    cal = Calibration(lr=0.1)
    _learn_hesitant(cal, batches=60, n=32)
    s = cal.scales["linear"]
    assert 2.0 < s <= MAX_SCALE, s
    p, y = _hesitant(2_000, 99)
    sharp = cal.apply({"linear": p})["linear"]
    assert (sharp.argmax(1) == p.argmax(1)).all()  # the ranking, so accuracy, is the same
    (log_before, brier_before), (log_after, brier_after) = _scores(p, y), _scores(sharp, y)
    assert log_after < log_before and brier_after < brier_before
    np.testing.assert_allclose(sharp.sum(1), 1.0, atol=1e-6)


def test_an_over_confident_expert_is_never_softened() -> None:
    """Right 60% of the time at 0.99: the log loss wants s < 1; the scale stays at 1."""
    rng = np.random.default_rng(0)
    cal = Calibration(lr=0.1)
    for _ in range(40):
        y = rng.integers(0, 2, 32)
        top = np.where(rng.random(32) < 0.6, y, 1 - y)
        p = np.full((32, 2), 0.01, np.float32)
        p[np.arange(32), top] = 0.99
        cal.apply({"mlp": p})
        cal.learn(list(range(32)), y)
    assert cal.scales["mlp"] == 1.0
    probe = np.array([[0.99, 0.01]], np.float32)
    assert cal.apply({"mlp": probe})["mlp"] is probe  # scale 1: the expert's own array


def test_the_scale_is_bounded_and_new_classes_are_skipped() -> None:
    cal = Calibration(lr=0.5)
    p = np.array([[0.55, 0.45]] * 8, np.float32)
    for _ in range(200):  # always right at 0.55: the gradient keeps asking for more
        cal.apply({"e": p})
        cal.learn(list(range(8)), np.zeros(8, np.int64))
    assert cal.scales["e"] == MAX_SCALE
    before = dict(cal.scales)
    cal.apply({"e": p})
    cal.learn(list(range(8)), np.full(8, -1, np.int64))  # classes not seen yet
    cal.learn([], np.zeros(0, np.int64))
    assert cal.scales == before


def test_a_non_finite_output_does_not_poison_the_scale() -> None:
    cal = Calibration(lr=0.1)
    p, y = _hesitant(16, 0)
    cal.apply({"linear": p})
    cal.learn(list(range(16)), y)
    before = cal.state_dict()
    bad = p.copy()
    bad[3] = np.nan
    cal.apply({"linear": bad})
    cal.learn(list(range(16)), y)
    assert cal.state_dict() == before
    cal.apply({"linear": p})
    cal.learn(list(range(16)), y)
    assert math.isfinite(cal.scales["linear"]) and cal.scales["linear"] > before["scales"]["linear"]


def test_calibrate_keeps_the_ranking_and_one_is_the_identity() -> None:
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], np.float32)
    out = calibrate({"a": p, "b": p}, {"a": 1.0, "b": 3.0})
    assert out["a"] is p and list(out) == ["a", "b"]
    s = out["b"]
    assert s.dtype == np.float32
    assert (s.argmax(1) == p.argmax(1)).all()
    expected = p**3 / (p**3).sum(1, keepdims=True)
    np.testing.assert_allclose(s, expected, rtol=1e-5)


def test_state_round_trip_continues_identically() -> None:
    a = Calibration(lr=0.1)
    _learn_hesitant(a, batches=5, n=16)
    b = Calibration(lr=0.1)
    b.load_state_dict(a.state_dict())
    p, y = _hesitant(16, 7)
    a.apply({"linear": p})
    a.learn(list(range(16)), y)
    b.apply({"linear": p})
    b.learn(list(range(16)), y)
    assert a.scales == b.scales


def _hyperplane(n: int, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=6)
    x = rng.normal(size=(n, 6))
    y = (x @ w > 0).astype(int)
    return [
        Event(id=str(i), features={f"f{j}": float(v) for j, v in enumerate(row)}, label=int(c))
        for i, (row, c) in enumerate(zip(x, y, strict=True))
    ]


def test_the_learner_sharpens_its_linear_expert_and_a_version_carries_the_scales() -> None:
    learner = Learner(LearnerSettings())
    events = _hyperplane(600)
    for i in range(0, len(events), 32):
        learner.predict_learn(events[i : i + 32])
    assert learner.calibration is not None
    assert learner.calibration.scales["linear"] > 1.0
    snapshot = learner.snapshot()
    assert snapshot.calibration == learner.calibration.scales
    data, sha = encode_version(snapshot, 1, "m", 0.0, {})
    loaded = decode_version(data, {}, sha)
    assert loaded.snapshot.calibration == snapshot.calibration
    probe = [Event(id=e.id, features=e.features) for e in _hyperplane(50, seed=2)]
    a = np.array([list(p.probabilities.values()) for p in snapshot.predict(probe)])
    b = np.array([list(p.probabilities.values()) for p in loaded.predict(probe)])
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    plain = dataclasses.replace(snapshot, calibration={})
    c = np.array([list(p.probabilities.values()) for p in plain.predict(probe)])
    assert np.abs(a - c).max() > 1e-3  # without the scales the replica predicts otherwise


def test_off_is_the_old_learner() -> None:
    """``calibration_lr=0``: no calibration state, the experts' own probabilities."""
    learner = Learner(LearnerSettings(calibration_lr=0.0))
    events = stream(200, seed=1)
    for i in range(0, len(events), 16):
        learner.predict_learn(events[i : i + 16])
    assert learner.calibration is None
    assert learner.snapshot().calibration == {}
    assert learner.state_dict()["calibration"] is None


def test_delayed_labels_sharpen_a_hesitant_expert_too() -> None:
    """Joined labels step the scales from the outputs kept with the pending events."""
    learner = Learner(LearnerSettings())
    rng = np.random.default_rng(0)
    learner.learn_matrix(rng.normal(size=(64, 2)).astype(np.float32), [i % 2 for i in range(64)])
    assert learner.calibration is not None and learner.calibration.scales == {}
    names = ("mlp", "linear")
    # mlp: sure and right half the time; linear: right every time at 0.6
    kept = [(names, np.array([[0.95, 0.05], [0.6, 0.4]], np.float32))] * 8 + [
        (names, np.array([[0.95, 0.05], [0.4, 0.6]], np.float32))
    ] * 8
    for _ in range(20):
        x = np.zeros((16, 2), np.float32)
        learner.learn_delayed(x, [0] * 8 + [1] * 8, [0] * 16, list("abcdefghijklmnop"), kept)
    scales = learner.calibration.scales
    assert scales["linear"] > 1.5  # right but hesitant: sharpened
    assert scales["mlp"] == 1.0  # wrong at 0.95 half the time: never softened below 1
    plain = Learner(LearnerSettings(calibration_lr=0.0))
    plain.learn_matrix(rng.normal(size=(8, 2)).astype(np.float32), [0, 1] * 4)
    plain.learn_delayed(np.zeros((2, 2), np.float32), [0, 1], [0, 0], ["a", "b"], kept[:2])
    assert plain.calibration is None and len(plain.hedge) > 0


def test_a_state_from_before_the_calibration_loads_and_starts_at_one() -> None:
    """Checkpoints written before the setting existed have no ``calibration`` entry."""
    old = Learner(LearnerSettings(calibration_lr=0.0))
    events = stream(200, seed=2)
    for i in range(0, len(events), 16):
        old.predict_learn(events[i : i + 16])
    state = old.state_dict()
    del state["calibration"]
    new = Learner(LearnerSettings())
    new.load_state_dict(state)
    assert new.calibration is not None and new.calibration.scales == {}
    probe = [Event(id=e.id, features=e.features) for e in stream(20, seed=3)]
    assert new.snapshot().predict(probe) == old.snapshot().predict(probe)
