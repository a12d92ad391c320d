"""Delayed labels: the Hedge weights learn from each expert's output at prediction time."""

from __future__ import annotations

import json

import numpy as np
from sources import ListSource
from streamcl.connectors.base import Record

from streamcl.events import Event, EventDecoder
from streamcl.learning.combination import MIXTURE
from streamcl.learning.delayed import delayed_losses, event_outputs
from streamcl.learning.learner import Learner
from streamcl.metrics import Metrics
from streamcl.settings import LearnerSettings
from streamcl.stream.labels import LabelJoin, PendingLabels
from streamcl.stream.prequential import StreamLoop


def _trained(n: int = 64) -> Learner:
    learner = Learner(LearnerSettings(label_lags=0))
    rng = np.random.default_rng(0)
    learner.learn_matrix(rng.normal(size=(n, 2)).astype(np.float32), [i % 2 for i in range(n)])
    return learner


def _join(learner: Learner, outputs: tuple[tuple[str, ...], np.ndarray], n: int = 20) -> None:
    """Join ``n`` labels 1 of events predicted 0, each kept with ``outputs``."""
    x = np.zeros((n, 2), np.float32)
    learner.learn_delayed(x, [1] * n, [0] * n, [str(i) for i in range(n)], [outputs] * n)


def test_joined_labels_score_the_outputs_stored_at_event_time() -> None:
    # The stored outputs say "knn was right, mlp wrong": whatever the experts would say now,
    # the weights follow what they said when the events were predicted.
    learner = _trained()
    names = ("mlp", "knn")
    said = np.array([[0.9, 0.1], [0.1, 0.9]], np.float32)  # mlp: class 0, knn: class 1
    _join(learner, (names, said))
    assert learner.hedge["knn"] < learner.hedge["mlp"]
    w = learner.weights()
    assert w["knn"] > 10 * w["mlp"]
    untouched = [k for k in learner.hedge if k not in names]
    assert all(learner.hedge[k] == 0.0 for k in untouched)


def test_without_stored_outputs_the_weights_do_not_move() -> None:
    learner = _trained()
    learner.learn_delayed(np.zeros((5, 2), np.float32), [1] * 5, [0] * 5, list("abcde"))
    assert set(learner.hedge.values()) == {0.0}


def test_a_class_unknown_at_event_time_costs_every_expert_the_maximal_loss() -> None:
    out = (("mlp", "knn"), np.array([[0.5, 0.5], [0.2, 0.8]], np.float32))
    y = np.array([2, 0, 1])
    losses = delayed_losses([out, None, out], y, regression=False, loss="log")
    assert losses["mlp"][0] == losses["knn"][0] > 9.0  # class 2 had no output unit then
    assert np.allclose(losses["knn"][1], -np.log(0.8)) and len(losses["mlp"]) == 2
    brier = delayed_losses([out, None, out], y, regression=False)  # the default hedge_loss
    assert brier["mlp"][0] == brier["knn"][0] == 2.0  # Brier's maximum
    assert np.allclose(brier["knn"][1], 0.2**2 + 0.2**2) and len(brier["mlp"]) == 2


def test_an_expert_absent_at_event_time_pays_the_mixtures_loss_on_join() -> None:
    # Sleeping experts (as for labels that come with their events): the tree had nothing
    # to say when these events were predicted; it is charged what the mixture lost.
    names = ("mlp", "knn", MIXTURE)
    said = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    y = np.array([1, 0])
    losses = delayed_losses([(names, said)] * 2, y, False, experts=["mlp", "knn", "tree"])
    mixed = losses[MIXTURE]
    assert np.allclose(mixed, [0.6**2 + 0.4**2 - 2 * 0.4 + 1, 0.6**2 + 0.4**2 - 2 * 0.6 + 1])
    assert losses["tree"].tolist() == mixed.tolist()
    assert "tree" not in delayed_losses([(names[:2], said[:2])] * 2, y, False, experts=["tree"])
    learner = _trained()
    _join(learner, (names, said))
    assert learner.hedge["mlp"] > learner.hedge["tree"] > learner.hedge["knn"] > 0.0
    assert MIXTURE not in learner.hedge
    assert learner.calibration is not None and MIXTURE not in learner.calibration.scales


def test_event_outputs_follow_the_steps_of_a_call() -> None:
    steps = [({"a": np.array([[1.0, 0.0]]), "b": np.array([[0.0, 1.0]])}, 1), ({}, 2)]
    steps.append(({"a": np.array([[0.3, 0.7], [0.6, 0.4]])}, 2))
    got = event_outputs(steps, [0, 1, 4])
    assert got[0] is not None and got[0][0] == ("a", "b")
    assert got[0][1].tolist() == [[1.0, 0.0], [0.0, 1.0]] and got[1] is None
    assert got[2] is not None and got[2][0] == ("a",) and np.allclose(got[2][1], [[0.6, 0.4]])


def _rule(n: int) -> list[Event]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    return [
        Event(id=str(i), features={"a": float(a), "b": float(b)}, label=int(a + b > 0))
        for i, (a, b) in enumerate(x)
    ]


def test_the_stream_loop_keeps_outputs_with_pending_events_and_hedge_learns_on_join() -> None:
    # Labels arrive one batch late and are independent of each other: only the stored
    # outputs can tell that the temporal expert (the label before) is worth nothing here.
    learner = Learner(LearnerSettings(label_lags=0, batch_size=8))
    loop = StreamLoop(
        ListSource([]), learner, EventDecoder(target="class"), Metrics(), batch_size=8
    )
    loop.labels = LabelJoin(PendingLabels(), "labels", learner, loop.score, loop.metrics)
    events = _rule(1_500)
    previous: list[Event] = []
    for i in range(0, len(events), 8):
        batch = events[i : i + 8]
        loop.process([Event(id=e.id, features=e.features) for e in batch])
        held = loop.labels.store.events[batch[-1].id].experts
        assert (held is None) == (i < 16)  # nothing to keep before the first join
        assert held is None or "mlp" in held[0]
        records = [
            Record(json.dumps({"id": e.id, "label": e.label}).encode(), topic="labels")
            for e in previous
        ]
        loop.labels.join(records, lambda r, exc: None)
        previous = batch
    assert learner.events_learned == len(events) - len(previous)
    weights = learner.weights()
    assert weights["temporal"] < 0.02 and max(weights.values()) > 0.3, weights


def test_pending_expert_outputs_survive_a_checkpoint() -> None:
    store = PendingLabels()
    out = (("mlp", "temporal"), np.array([[0.25, 0.75], [1.0, 0.0]], np.float32))
    store.hold("a", np.zeros(2, np.float32), 1, out)
    store.hold("b", np.zeros(2, np.float32), None)
    again = PendingLabels()
    again.load_state_dict(json.loads(json.dumps(store.state_dict())))
    a = again.match("a", 0)
    assert a is not None and a.experts is not None and a.experts[0] == out[0]
    assert a.experts[1].dtype == np.float32 and a.experts[1].tolist() == out[1].tolist()
    b = again.match("b", 0)
    assert b is not None and b.experts is None
