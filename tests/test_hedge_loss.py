"""Hedge weights move by the Brier score of each expert's class probabilities."""

from __future__ import annotations

import numpy as np

from streamcl.events import Event
from streamcl.learning.combination import (
    fixed_share,
    hedge_losses,
    hedge_weights,
    predictor_losses,
)
from streamcl.learning.delayed import delayed_losses
from streamcl.learning.learner import Learner
from streamcl.settings import LearnerSettings


def _weights(parts: dict[str, np.ndarray], y: np.ndarray, loss: str) -> dict[str, float]:
    losses = predictor_losses(parts, list(range(len(y))), y, False, loss=loss)
    return hedge_weights({n: hedge_losses(0.0, v, 1.0) for n, v in losses.items()}, 1.0)


def test_a_confident_wrong_expert_loses_more_weight_than_a_hesitant_wrong_one() -> None:
    parts = {"confident": np.array([[0.95, 0.05]]), "hesitant": np.array([[0.55, 0.45]])}
    w = _weights(parts, np.array([1]), "brier")
    assert w["confident"] < w["hesitant"]  # both wrong: a 0/1 loss would tie them
    # exp(-Brier): 2 * 0.95^2 = 1.805 against 2 * 0.55^2 = 0.605
    assert np.isclose(w["confident"] / w["hesitant"], np.exp(-(1.805 - 0.605)))


def test_one_near_zero_probability_does_not_sink_an_otherwise_perfect_expert() -> None:
    """Brier is bounded by 2 per event; the log loss charges ~9.2 nats for p = 1e-4."""
    y = np.zeros(10, dtype=np.int64)
    sharp = np.tile([1.0, 0.0], (10, 1))
    sharp[0] = [1e-4, 1 - 1e-4]  # one confident mistake, right with certainty otherwise
    steady = np.tile([0.6, 0.4], (10, 1))  # always right, never sure
    parts = {"sharp": sharp, "steady": steady}
    assert _weights(parts, y, "brier")["sharp"] > 0.5
    assert _weights(parts, y, "log")["sharp"] < 0.5  # hedge_loss="log": the old behaviour


def test_delayed_labels_pay_the_same_brier_loss() -> None:
    values = np.array([[0.95, 0.05], [0.55, 0.45]], dtype=np.float32)
    losses = delayed_losses([(("a", "b"), values)], np.array([1]), False)
    online = predictor_losses({"a": values[:1], "b": values[1:]}, [0], np.array([1]), False)
    np.testing.assert_allclose([losses["a"][0], losses["b"][0]], [online["a"][0], online["b"][0]])
    assert np.isclose(losses["a"][0], 1.805)


def test_the_learner_scores_its_experts_with_the_hedge_loss_setting() -> None:
    rng = np.random.default_rng(0)
    events = [
        Event(id=str(i), features={"x": float(v)}, label=int(v > 0))
        for i, v in enumerate(rng.normal(size=400))
    ]
    totals = {}
    for loss in ("brier", "log"):
        learner = Learner(LearnerSettings(hedge_loss=loss))  # type: ignore[arg-type]
        for i in range(0, len(events), 50):
            learner.predict_learn(events[i : i + 50])
        totals[loss] = max(learner.hedge.values())
    assert 0 < totals["brier"] < totals["log"]  # per event: Brier <= 2, log loss up to 9.2


def test_fixed_share_keeps_a_floor_under_every_weight_and_keeps_their_order() -> None:
    hedge = {"good": 0.0, "bad": 8.0, "worse": 12.0}  # the bad ones near weight 0
    shared = fixed_share(hedge, 1.0, 0.01, 64)
    w = hedge_weights(shared, 1.0)
    a = 1 - 0.99**64
    assert np.isclose(sum(w.values()), 1.0)
    assert w["bad"] >= a / 3 and w["worse"] >= a / 3
    assert w["good"] > w["bad"] > w["worse"]
    assert np.isclose(w["good"], (1 - a) * hedge_weights(hedge, 1.0)["good"] + a / 3)
    assert fixed_share(hedge, 1.0, 0.0, 64) == hedge  # off
    assert fixed_share(hedge, 1.0, 0.01, 0) == hedge  # no labelled event, no share


def test_after_a_switch_fixed_share_hands_the_lead_over_sooner_than_plain_hedge() -> None:
    """1,000 events where expert a is right, then b: with the share, b leads sooner."""
    lead = {}
    for alpha in (0.0, 0.01):
        hedge = {"a": 0.0, "b": 0.0}
        for t in range(3_000):
            loss = {"a": 0.0, "b": 1.0} if t < 1_000 else {"a": 1.0, "b": 0.0}
            hedge = {n: hedge_losses(v, np.array([loss[n]]), 1.0) for n, v in hedge.items()}
            hedge = fixed_share(hedge, 1.0, alpha, 1)
            if t >= 1_000 and hedge_weights(hedge, 1.0)["b"] > 0.5:
                lead[alpha] = t - 1_000
                break
    assert lead[0.01] < 10 < 999 <= lead[0.0]  # plain: once b has made up all of a's lead


def test_the_learner_keeps_the_fixed_share_floor_under_its_weakest_expert() -> None:
    """The temporal expert is useless on i.i.d. labels: plain Hedge sinks it, the share not."""
    rng = np.random.default_rng(1)
    values = rng.normal(size=(640, 2))
    events = [
        Event(id=str(i), features={"a": float(a), "b": float(b)}, label=int(a + b > 0))
        for i, (a, b) in enumerate(values)
    ]
    lowest = {}
    for share in (0.0, 0.05):
        learner = Learner(LearnerSettings(hedge_share=share, warmup=0, batch_size=64))
        for i in range(0, len(events), 64):
            learner.predict_learn(events[i : i + 64])
        lowest[share] = min(learner.weights().values())
    floor = (1 - 0.95**64) / len(learner.weights())
    assert lowest[0.05] >= floor - 1e-9
    assert lowest[0.0] < floor


def test_an_expert_not_ready_yet_pays_the_mixtures_loss_and_wakes_up_on_a_par() -> None:
    """Sleeping experts (Freund et al. 1997): the tree, unfit for its first 32 events, must
    not join the mixture with no loss at all against experts that paid for every event."""
    rng = np.random.default_rng(2)
    events = [
        Event(id=str(i), features={"x": float(v)}, label=int(v > 0))
        for i, v in enumerate(rng.normal(size=20))
    ]
    decay = 0.95
    learner = Learner(LearnerSettings(hedge_share=0.0, hedge_decay=decay))
    expected = 0.0
    for event in events:
        (prediction,) = learner.predict_learn([event])
        assert not learner.tree.ready  # type: ignore[union-attr]
        if prediction.probabilities:  # the mixture predicted: the sleeping tree pays its loss
            p = np.array([prediction.probabilities.get(str(c), 0.0) for c in learner.classes])
            y = learner.classes.index(event.label)
            expected = decay * expected + float((p**2).sum() - 2 * p[y] + 1)
    assert expected > 1.0
    assert np.isclose(learner.hedge["tree"], expected, rtol=1e-5)
    others = [v for name, v in learner.hedge.items() if name != "tree"]
    assert learner.hedge["tree"] <= max(others)
