"""Learner behaviour: label lags without leakage, the numpy fast path, regression, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamcl.events import Event
from streamcl.learning import fastpath
from streamcl.learning.learner import Learner
from streamcl.learning.network import MLP
from streamcl.metrics import Metrics
from streamcl.settings import LearnerSettings


def _ev(i: int, x: float, label: int | None) -> Event:
    return Event(id=str(i), features={"x": x}, label=label)


def test_label_lags_use_earlier_events_of_the_batch_never_their_own() -> None:
    learner = Learner(LearnerSettings(label_lags=2))
    learner.predict_learn([_ev(0, 0.0, 0), _ev(1, 1.0, 1)])  # registers lag columns
    batch = [_ev(2, 0.0, 0), _ev(3, 0.0, None), _ev(4, 0.0, 1), _ev(5, 0.0, 0)]
    x = learner.featurizer.transform(batch, learn=True)
    col = learner.featurizer.columns
    lag1 = {c: col[f"__lag1_{c}"] for c in (0, 1)}
    lag2 = {c: col[f"__lag2_{c}"] for c in (0, 1)}
    # before the batch the most recent labels were 1, then 0
    assert x[0, lag1[1]] == 1 and x[0, lag1[0]] == 0 and x[0, lag2[0]] == 1
    # event 3 (unlabelled) sees event 2's label; event 4 too (3 had none)
    assert x[1, lag1[0]] == 1 and x[2, lag1[0]] == 1 and x[2, lag2[1]] == 1
    # event 5 sees event 4's label (1), not its own (0)
    assert x[3, lag1[1]] == 1 and x[3, lag1[0]] == 0


def test_prediction_never_sees_its_own_label() -> None:
    """A stream whose label is a coin flip: a leak would give ~100% accuracy."""
    rng = np.random.default_rng(0)
    events = [_ev(i, 0.0, int(rng.integers(0, 2))) for i in range(2000)]
    learner = Learner(LearnerSettings(label_lags=3))
    hits = 0
    for i in range(0, 2000, 16):
        batch = events[i : i + 16]
        hits += sum(
            p.label == e.label for p, e in zip(learner.predict_learn(batch), batch, strict=True)
        )
    assert hits / 2000 < 0.56


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_fast_path_matches_autograd_and_torch_optim(name: str) -> None:
    x = np.random.default_rng(1).normal(size=(24, 5)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, 24)
    a, b = MLP(5, (8, 6), 3, seed=3), MLP(5, (8, 6), 3, seed=3)
    opt_a = (torch.optim.SGD if name == "sgd" else torch.optim.Adam)(a.parameters(), lr=0.05)
    opt_b = (torch.optim.SGD if name == "sgd" else torch.optim.Adam)(b.parameters(), lr=0.05)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(a(torch.from_numpy(x)), torch.from_numpy(y))
        expected = float(loss.detach())
        opt_a.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(a.parameters()), 10.0)
        opt_a.step()
        with torch.no_grad():
            fast_loss, _, _ = fastpath.step(
                list(b.parameters()), fastpath.numpy_params(b), opt_b, x, y, "ce", 10.0
            )
        assert fast_loss == pytest.approx(expected, rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_regression_learns_a_linear_target() -> None:
    rng = np.random.default_rng(0)
    learner = Learner(LearnerSettings(task="regression", label_lags=0))
    errors = []
    for i in range(0, 3000, 16):
        xs = rng.uniform(-1, 1, 16)
        batch = [_ev(i + j, float(v), round(100 * v)) for j, v in enumerate(xs)]
        preds = learner.predict_learn(batch)
        if i > 2000:
            errors += [abs(p.label - e.label) for p, e in zip(preds, batch, strict=True)]  # type: ignore[operator]
    assert all(isinstance(p.label, float) and p.probabilities == {} for p in preds)
    assert np.mean(errors) < 10.0  # targets span -100..100


def test_new_classes_are_discovered_and_a_rare_class_is_predicted() -> None:
    learner = Learner(LearnerSettings(label_lags=0, memory={"prototypes": True}))
    for i in range(0, 4800, 16):
        learner.predict_learn([_ev(i + j, float(j % 2), j % 2) for j in range(16)])
    learner.predict_learn([_ev(9999, 3.0, 7), _ev(10000, 3.0, 7)])
    assert learner.classes == [0, 1, 7]
    pred = learner.snapshot().predict([_ev(10001, 3.0, None)])[0]
    assert set(pred.probabilities) == {"0", "1", "7"} and pred.probabilities["7"] > 0.1
    x = learner.featurizer.transform([_ev(10001, 3.0, None)])
    parts, _ = learner._parts(x)
    assert parts["prototypes"].argmax() == 2 and parts["knn"].argmax() == 2  # seen twice


def test_summary_and_metrics_report_memory_drift_and_weights() -> None:
    learner = Learner(LearnerSettings())
    rng = np.random.default_rng(0)
    for i in range(0, 640, 16):
        learner.predict_learn(
            [_ev(i + j, float(rng.normal()), int(rng.integers(0, 2))) for j in range(16)]
        )
    s = learner.summary()
    assert s["memory"]["entries"] == 640 and s["memory"]["bytes"] > 0
    assert abs(sum(s["predictor_weights"].values()) - 1.0) < 1e-9
    assert set(s["predictor_weights"]) == {"mlp", "knn", "recent", "temporal", "linear", "tree"}
    assert s["memory"]["recent_entries"] == 100  # the short-term memory's window
    assert {"counts", "last", "log"} <= set(s["drift"]) and 0.0 <= s["window_accuracy"] <= 1.0
    m = Metrics()
    learner.export_metrics(m, every=1)
    text = m.exposition().decode()
    assert "streamcl_memory_entries 640.0" in text
    assert 'streamcl_predictor_weight{predictor="knn"}' in text


def test_ema_snapshot_serves_averaged_weights() -> None:
    learner = Learner(LearnerSettings(ema_decay=0.9, label_lags=0))
    for i in range(0, 160, 16):
        learner.predict_learn([_ev(i + j, float(j), j % 2) for j in range(16)])
    served = learner.snapshot().params[0][0]
    assert learner.model is not None
    assert not torch.equal(served, learner.model.hidden_layers[0].weight.detach())
    assert torch.equal(served, learner.trainer.ema[0])  # type: ignore[index]


def test_config_file_learner_section_equals_the_measured_defaults() -> None:
    from pathlib import Path

    from streamcl.settings import load_settings

    config = Path(__file__).resolve().parents[1] / "config" / "default.yaml"
    assert load_settings(config).learner == LearnerSettings()
