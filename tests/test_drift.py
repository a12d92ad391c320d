"""Drift detection: fires on abrupt drift, stays quiet on a stationary stream, restores."""

from __future__ import annotations

import random

import numpy as np
import pytest
from river import drift

from streamcl.events import Event
from streamcl.learning.detectors import adwin_until, page_hinkley_until
from streamcl.learning.drift import DriftMonitor, detector_state, load_detector, make_detector
from streamcl.learning.learner import Learner
from streamcl.learning.recovery import Recovery
from streamcl.settings import DriftSettings, LearnerSettings


def _errors(n: int, rates: list[float], seed: int = 0) -> np.ndarray:
    """``n`` Bernoulli errors per segment, one segment per rate."""
    rng = np.random.default_rng(seed)
    return np.concatenate([(rng.random(n) < r).astype(float) for r in rates])


def _feed(monitor: DriftMonitor, errors: np.ndarray) -> list[int]:
    fired = []
    for i in range(0, len(errors), 16):
        chunk = errors[i : i + 16]
        for rec in monitor.update(chunk, [str(i + j) for j in range(len(chunk))], i):
            fired.append(rec.event)
    return fired


@pytest.mark.parametrize("kind", ["adwin", "kswin", "page_hinkley"])
def test_fires_on_abrupt_drift_not_on_stationary_stream(kind: str) -> None:
    drifted = _feed(DriftMonitor(kind, input_detector="none"), _errors(2000, [0.1, 0.5]))
    assert drifted and 2000 <= drifted[0] < 2400, drifted
    quiet = _feed(DriftMonitor(kind, input_detector="none"), _errors(2000, [0.1, 0.1]))
    assert quiet == []


def test_drift_log_records_what_fired() -> None:
    monitor = DriftMonitor("adwin", input_detector="none", log_size=2)
    _feed(monitor, _errors(1500, [0.05, 0.6, 0.05, 0.6, 0.05, 0.6]))
    assert monitor.counts["loss"] == 3 and len(monitor.log) == 2  # increases only
    rec = monitor.log[-1]
    assert rec.detector == "loss" and rec.kind == "adwin" and rec.window > 0
    assert rec.event_id == str(rec.event) and rec.time > 0


def test_input_drift_on_nearest_memory_distance() -> None:
    monitor = DriftMonitor("none", input_detector="knn_distance")
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(1.0, 0.1, 1000), rng.normal(5.0, 0.1, 200)])
    fired = [
        r.event
        for i in range(0, 1200, 16)
        for r in monitor.update(np.zeros(0), [], i, d[i : i + 16])
    ]
    assert fired and fired[0] >= 1000 and monitor.counts["input"] >= 1


@pytest.mark.parametrize("kind", ["adwin", "kswin", "page_hinkley"])
def test_detector_state_round_trip(kind: str) -> None:
    values = _errors(1500, [0.1, 0.4], seed=3)
    a = make_detector(kind, seed=1)
    for v in values[:1200]:
        a.update(v)
    b = load_detector(detector_state(a))
    fired_a, fired_b = [], []
    for i, v in enumerate(values[1200:]):
        a.update(v)
        b.update(v)
        fired_a += [i] if a.drift_detected else []
        fired_b += [i] if b.drift_detected else []
    assert fired_a == fired_b


def _rule_stream(n: int, flip_at: int | None, shift_at: int | None = None) -> list[Event]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        if shift_at is not None and i >= shift_at:
            a += 6.0
        positive = a + b > 0 if shift_at is None else b > 0
        if flip_at is not None and i >= flip_at:
            positive = not positive
        out.append(Event(id=str(i), features={"a": a, "b": b}, label=int(positive)))
    return out


def _learn(settings: LearnerSettings, events: list[Event]) -> Learner:
    learner = Learner(settings)
    for i in range(0, len(events), 16):
        learner.predict_learn(events[i : i + 16])
    return learner


def test_learner_detects_an_abrupt_concept_drift_and_acts() -> None:
    settings = LearnerSettings(label_lags=0)
    learner = _learn(settings, _rule_stream(3000, flip_at=1500))
    loss = [r for r in learner.drift.log if r.detector == "loss"]
    assert loss and 1500 <= loss[0].event < 1900
    assert learner.trainer.restart_at is not None  # lr_restart
    assert learner.knn is not None and learner.knn.size < settings.memory.capacity  # trimmed
    s = learner.summary()
    assert s["drift"]["counts"]["loss"] >= 1 and s["drift"]["last"]["detector"] in ("loss", "input")
    assert s["recovery_events"] is not None and s["window_accuracy"] > 0.8


@pytest.mark.parametrize("flip_at", [1504, 1517])
def test_drift_trim_forgets_the_old_concept_up_to_the_change(flip_at: int) -> None:
    # Stop right after the first detection: what the memories still hold from before the
    # change is only what the change-point estimate may misplace (a few events), not the
    # rows of the batch that straddles the change (1517: mid-batch) nor k extra "kept" rows.
    settings = LearnerSettings(label_lags=0, batch_size=32)
    events = _rule_stream(3000, flip_at=flip_at)
    learner = Learner(settings)
    for i in range(0, len(events), 32):
        learner.predict_learn(events[i : i + 32])
        if learner.drift.counts["loss"]:
            break
    assert learner.knn is not None and learner.recent is not None
    assert learner.knn.size >= settings.memory.k
    for memory in (learner.knn, learner.recent, learner.replay):
        assert (memory.times[: memory.size] < flip_at - 3).sum() == 0


@pytest.mark.parametrize("flip_at", [1500, 1610, 1700])
def test_a_drift_inside_a_micro_batch_ends_it(flip_at: int) -> None:
    # Batches of 256: the drift is detected well inside one. The events after the detecting
    # one are predicted by the adapted learner (trimmed memory, fresh combination), not by
    # the old concept, and every event is still predicted exactly once.
    events = _rule_stream(3000, flip_at=flip_at)
    # The warm-up of 128 events this scenario was built with (the default's 1,024 changes
    # the learning before the flip, and with it where the detection falls).
    learner = Learner(LearnerSettings(label_lags=0, batch_size=256, warmup=128))
    correct: list[bool] = []
    for i in range(0, len(events), 256):
        batch = events[i : i + 256]
        predictions = learner.predict_learn(batch)
        assert len(predictions) == len(batch) and learner.events_seen == i + len(batch)
        correct += [p.label == e.label for p, e in zip(predictions, batch, strict=True)]
        if learner.drift.counts["loss"]:
            break
    (drift,) = [r for r in learner.drift.log if r.detector == "loss"]
    assert flip_at <= drift.event < flip_at + 40
    end = len(correct)
    assert end - drift.event > 20  # the detection was inside the batch, not at its end
    assert np.mean(correct[flip_at : drift.event + 1]) < 0.3  # the old concept, until then
    assert np.mean(correct[drift.event + 1 : end]) > 0.8  # the new one, in the same batch


def test_change_point_is_placed_at_the_drop_of_a_near_perfect_stream() -> None:
    # Accuracy ~0.99 for 1000 events, then 16 events at ~0.25: the Bernoulli likelihood
    # split puts the change at the drop. (The mean-difference split placed it 45 events
    # early on this sequence: two errors close together before the change pulled it.)
    rng = np.random.default_rng(4)
    before, after = rng.random(1000) > 0.01, rng.random(16) > 0.75
    after[0] = False
    recovery = Recovery(window=500)
    recovery.update(np.concatenate([before, after]))
    assert recovery.change_age(1000) == 16


def test_monitor_consumes_a_batch_only_up_to_a_loss_drift() -> None:
    monitor = DriftMonitor("adwin", input_detector="none")
    errors = _errors(1000, [0.0, 1.0])
    positions = np.arange(len(errors)) * 2  # every other event of the batch is labelled
    (rec,) = monitor.update(errors, [str(p) for p in positions], 100, None, positions)
    j = int(np.flatnonzero(positions == rec.event - 100)[0])  # the labelled row that fired
    assert 1000 <= j < 1100 and rec.event_id == str(positions[j])
    assert len(monitor.recent) == j + 1  # the rest is fed again by the caller


def test_learner_quiet_on_a_stationary_stream_of_the_same_length() -> None:
    learner = _learn(LearnerSettings(label_lags=0), _rule_stream(3000, flip_at=None))
    assert learner.drift.counts["loss"] == 0


def test_learner_input_drift_is_logged() -> None:
    learner = _learn(LearnerSettings(label_lags=0), _rule_stream(2500, None, shift_at=1500))
    assert any(r.detector == "input" and r.event >= 1500 for r in learner.drift.log)


ACT = DriftSettings(delayed_actions=("lr_restart", "trim_memory"))


def _learn_delayed(events: list[Event], delay: int = 100, drift: DriftSettings = ACT) -> Learner:
    """Events arrive without labels; each label joins ``delay`` events later."""
    learner = Learner(LearnerSettings(label_lags=0, batch_size=32, drift=drift))
    waiting: list[tuple[str, np.ndarray, object, int]] = []
    for i in range(0, len(events), 32):
        batch = [Event(id=e.id, features=e.features) for e in events[i : i + 32]]
        rows = learner.featurizer.transform(batch, learn=True)
        predictions = learner.predict_learn(batch)
        waiting += [
            (e.id, row, p.label, events[int(e.id)].label)
            for e, row, p in zip(batch, rows, predictions, strict=True)
        ]
        ready, waiting = waiting[:-delay], waiting[-delay:]
        if ready:
            ids, x, predicted, labels = zip(*ready, strict=True)
            learner.learn_delayed(np.stack(x), list(labels), list(predicted), list(ids))
    return learner


def test_delayed_labels_feed_the_loss_drift_detector() -> None:
    # Labels joined 100 events after their prediction: the recorded predictions are scored
    # on join, so the drift is found (and acted on) without labels on the events.
    learner = _learn_delayed(_rule_stream(4000, flip_at=2000))
    loss = [r for r in learner.drift.log if r.detector == "loss"]
    assert loss and 2000 + 100 <= loss[0].event < 2000 + 600
    assert learner.trainer.restart_at is not None
    assert learner.knn is not None and learner.knn.size < LearnerSettings().memory.capacity
    assert learner.summary()["window_accuracy"] > 0.8  # recovered


def test_a_drift_on_delayed_labels_takes_no_action_by_default() -> None:
    learner = _learn_delayed(_rule_stream(4000, flip_at=2000), drift=DriftSettings())
    assert any(r.detector == "loss" and r.event >= 2000 for r in learner.drift.log)
    assert learner.trainer.restart_at is None
    assert learner.knn is not None and learner.knn.size == learner.knn.capacity


def test_delayed_labels_quiet_on_a_stationary_stream() -> None:
    learner = _learn_delayed(_rule_stream(4000, flip_at=None))
    assert learner.drift.counts["loss"] == 0 and learner.recovery.events > 3500


def test_input_drift_is_watched_on_events_without_labels() -> None:
    learner = _learn_delayed(_rule_stream(2500, None, shift_at=1500))
    assert any(r.detector == "input" and r.event >= 1500 for r in learner.drift.log)


@pytest.mark.parametrize("mode", ["up", "down", "both"])
def test_page_hinkley_batch_feed_equals_river_updates(mode: str) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(m, 1, 400) for m in (0, 3, 0)]).tolist()
    ours = drift.PageHinkley(min_instances=30, threshold=20.0, mode=mode)
    theirs = drift.PageHinkley(min_instances=30, threshold=20.0, mode=mode)
    start, fired = 0, []
    while start < len(values):
        chunk = values[start : start + 37]
        j = page_hinkley_until(ours, chunk)
        for k, v in enumerate(chunk if j is None else chunk[: j + 1]):
            theirs.update(v)
            assert theirs.drift_detected == (k == j)
        assert detector_state(ours) == detector_state(theirs)
        assert ours.drift_detected == theirs.drift_detected
        if j is not None:
            fired.append(start + j)
        start += len(chunk) if j is None else j + 1
    assert fired  # the shift was detected (and the test compared detections)


def test_adwin_batch_feed_equals_river_updates() -> None:
    values = _errors(600, [0.1, 0.6, 0.05, 0.5], seed=4).tolist()
    ours, theirs = make_detector("adwin"), make_detector("adwin")
    accepted: list[int] = []

    def accept(j: int) -> bool:  # every other detection stops the feed
        accepted.append(j)
        return len(accepted) % 2 == 0

    start, detections = 0, 0
    while start < len(values):
        chunk = values[start : start + 50]
        n_before = len(accepted)
        j = adwin_until(ours, chunk, accept)
        expected = []
        for k, v in enumerate(chunk if j is None else chunk[: j + 1]):
            theirs.update(v)
            if theirs.drift_detected:
                expected.append(k)
        assert accepted[n_before:] == expected
        detections += len(expected)
        assert ours.drift_detected == theirs.drift_detected
        assert (ours.width, ours.estimation) == (theirs.width, theirs.estimation)
        start += len(chunk) if j is None else j + 1
    assert detections >= 2
