"""A river-style property suite run over every learner and memory configuration.

Each check takes a settings factory and asserts one property of
:class:`streamcl.learning.learner.Learner`; ``tests/test_learner_checks.py`` runs every check on
every configuration in :data:`CONFIGS`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from streamcl.events import Event
from streamcl.learning.learner import Learner, Prediction
from streamcl.settings import LearnerSettings, PlasticitySettings

__all__ = ["CHECKS", "CONFIGS", "stream"]

#: name -> (learner settings overrides, plasticity settings overrides)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "mlp_only": (
        {
            "label_lags": 0,
            "memory": {"knn": False, "prototypes": False, "replay": 0},
            "drift": {"detector": "none"},
        },
        {},
    ),
    "reservoir_hnsw_prototypes": (
        {
            "memory": {
                "eviction": "reservoir",
                "hnsw_threshold": 40,
                "capacity": 120,
                "prototypes": True,
            }
        },
        {},
    ),
    "class_balanced": (
        {
            "memory": {
                "eviction": "class_balanced",
                "capacity": 60,
                "replay_balanced": True,
                "replay_capacity": 50,
            }
        },
        {},
    ),
    "embedding_space": ({"memory": {"space": "embedding"}, "label_lags": 3}, {}),
    "no_recent_prototypes": ({"memory": {"recent": 0, "prototypes": True}}, {}),
    "sgd_kswin_ema": (
        {
            "optimizer": "sgd",
            "lr": 0.05,
            "ema_decay": 0.9,
            "drift": {"detector": "kswin", "actions": ["shrink_perturb"]},
        },
        {},
    ),
    "upgd_page_hinkley": ({"optimizer": "upgd", "drift": {"detector": "page_hinkley"}}, {}),
    "adam_cbp_l2init": (
        {"hidden": [16, 16]},
        {"methods": ["cbp", "l2_init"], "cbp_maturity_threshold": 5, "cbp_replacement_rate": 0.05},
    ),
    "temporal_no_lags_decay": ({"label_lags": 0, "temporal_decay": 0.9}, {}),
    "no_temporal": ({"temporal": False}, {}),
    "linear_mlp_only": (
        {"temporal": False, "linear_lr": 0.3, "memory": {"knn": False, "prototypes": False}},
        {},
    ),
    "no_linear": ({"linear": False}, {}),
    "no_calibration": ({"calibration_lr": 0.0}, {}),
    "fast_calibration": ({"calibration_lr": 0.5}, {}),
    "no_tree": ({"tree": False}, {}),
    "shallow_tree_short_window": ({"tree_depth": 2, "tree_window": 64, "tree_every": 16}, {}),
    "regression": ({"task": "regression", "label_lags": 2}, {}),
    "regression_absolute_no_knn": (
        {"task": "regression", "loss": "absolute", "memory": {"knn": False}},
        {},
    ),
}


def make(name: str, **overrides: Any) -> Learner:
    """A fresh learner for configuration ``name`` (``overrides``: more learner settings)."""
    learner, plasticity = CONFIGS[name]
    return Learner(
        LearnerSettings(**{**learner, **overrides}), plasticity=PlasticitySettings(**plasticity)
    )


def stream(n: int, regression: bool = False, seed: int = 0, drop: bool = False) -> list[Event]:
    """A small mixed-type stream: numbers, a category, a bool; labels from a rule.

    With ``drop``, features disappear at random and a new one appears halfway through.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.uniform(-2, 2), rng.uniform(0, 10)
        colour = rng.choice(["red", "green", "blue"])
        features: dict[str, Any] = {"a": a, "b": b, "colour": colour, "flag": a > 0}
        if drop:
            for key in ("a", "colour"):
                if rng.random() < 0.2:
                    del features[key]
            if i > n // 2:
                features["late"] = rng.gauss(0, 1)
        if regression:
            label: Any = round(30.0 * a - 5.0 * b + 10 * (colour == "red"))  # int: Event labels
        else:
            label = "yes" if a + 0.2 * b > 1 else "no"
        out.append(Event(id=str(i), features=features, label=label))
    return out


def _run(learner: Learner, events: list[Event], batch: int = 16) -> list[Prediction]:
    preds: list[Prediction] = []
    for i in range(0, len(events), batch):
        preds.extend(learner.predict_learn(events[i : i + batch]))
    return preds


def _regression(name: str) -> bool:
    return CONFIGS[name][0].get("task") == "regression"


def _valid(p: Prediction, regression: bool) -> None:
    if regression:
        assert isinstance(p.label, float) and math.isfinite(p.label) and p.probabilities == {}
    elif p.label is not None:
        total = sum(p.probabilities.values())
        assert abs(total - 1.0) < 1e-4, p.probabilities
        assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())


def check_inputs_not_mutated(name: str) -> None:
    """predict_learn and snapshot predictions leave the events as they were."""
    events = stream(120, _regression(name), drop=True)
    before = [e.model_dump() for e in events]
    learner = make(name)
    _run(learner, events)
    learner.snapshot().predict(events)
    assert [e.model_dump() for e in events] == before


def check_feature_order_irrelevant(name: str) -> None:
    """Permuting the keys of every feature dict gives identical predictions."""
    events = stream(150, _regression(name), seed=1)
    shuffled = [
        Event(id=e.id, features=dict(reversed(list(e.features.items()))), label=e.label)
        for e in events
    ]
    assert _run(make(name), events) == _run(make(name), shuffled)


def check_features_appear_and_disappear(name: str) -> None:
    """Missing and new features are handled; every prediction stays valid and finite."""
    reg = _regression(name)
    learner = make(name)
    preds = _run(learner, stream(300, reg, seed=2, drop=True))
    for p in preds[20:]:
        _valid(p, reg)
    assert "late" in learner.featurizer.columns
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())  # type: ignore[union-attr]


def check_same_seed_same_predictions(name: str) -> None:
    """Two learners with the same settings and stream predict identically."""
    events = stream(200, _regression(name), seed=3)
    assert _run(make(name), events) == _run(make(name), events)


def check_state_dict_round_trip(name: str) -> None:
    """A learner restored from state_dict (plain data only) predicts and learns identically."""
    reg = _regression(name)
    events = stream(400, reg, seed=4)
    a = make(name)
    _run(a, events[:250])
    state = a.state_dict()
    _assert_plain(state)
    b = make(name)
    b.load_state_dict(state)
    assert a.snapshot().predict(events[250:300]) == b.snapshot().predict(events[250:300])
    assert _run(a, events[250:]) == _run(b, events[250:])


def check_snapshot_matches_learner(name: str) -> None:
    """A snapshot predicts what the learner itself predicts before learning the batch.

    Snapshots search their memory copy exactly; with an HNSW live index the two may differ
    on near-ties, so there only 80% agreement is required. The learner standardises a
    batch in statistics that include the batch's own features (:meth:`.Featurizer.transform`),
    which serving, scaling a request with the statistics learned so far, cannot know: the
    snapshot compared is that of a copy whose scaler has taken in the batch's features
    (and only them). Snapshots also leave the temporal expert out
    (:func:`streamcl.learning.report.snapshot`); on these streams' random labels its
    weight is too small to change a prediction once the Fixed Share floor is off (with
    ``hedge_share`` it keeps a weight of about ``hedge_share * batch / n_experts``, which
    moves a regression value by more than the comparison's tolerance).
    """
    events = stream(200, _regression(name), seed=5)
    # No warm-up: its smaller steps would update the scaler between parts of the batch,
    # which one snapshot cannot know (the learner is still warming up at event 160).
    learner = make(name, warmup=0, hedge_share=0.0)
    _run(learner, events[:160])
    # Unlabelled: labels arriving inside a batch refine the learner's own predictions of
    # later events in it (label lags, Hedge weights), which serving cannot know.
    batch = [Event(id=e.id, features=e.features) for e in events[160:192]]
    twin = make(name, warmup=0, hedge_share=0.0)
    twin.load_state_dict(learner.state_dict())
    twin.featurizer.transform(batch, learn=True)
    twin._restandardise()  # stored rows into the batch-inclusive scale, as predict_learn does
    twin.featurizer.learn(batch)  # unlabelled: commits the features' statistics only
    expected = twin.snapshot().predict(batch)
    got = learner.predict_learn(batch)
    same = [
        p.label == q.label
        or (isinstance(p.label, float) and math.isclose(p.label, q.label, rel_tol=1e-5))  # type: ignore[arg-type]
        for p, q in zip(expected, got, strict=True)
    ]
    approximate = learner.knn is not None and learner.knn.size >= learner.knn.hnsw_threshold
    assert sum(same) >= (0.8 * len(same) if approximate else len(same))


def check_non_finite_step_skipped(name: str) -> None:
    """A batch whose loss is not finite is skipped and counted; weights stay finite."""
    learner = make(name)
    _run(learner, stream(64, _regression(name), seed=6))
    x = learner.featurizer.transform(stream(4, _regression(name), seed=7))
    x[0, 0] = np.inf
    labels = [1.0, 2.0, 3.0, 4.0] if _regression(name) else ["yes", "no", "yes", "no"]
    before = learner.skipped_steps
    learner.learn_matrix(x, labels)
    assert learner.skipped_steps == before + 1
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())  # type: ignore[union-attr]
    for p in learner.predict_learn(stream(16, _regression(name), seed=8)):
        _valid(p, _regression(name))


def _assert_plain(obj: Any, path: str = "state") -> None:
    """Only tensors, numeric numpy arrays and JSON-able scalars, lists and str-keyed dicts."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str), f"{path}: non-str key {k!r}"
            _assert_plain(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _assert_plain(v, f"{path}[{i}]")
    elif isinstance(obj, np.ndarray):
        assert obj.dtype.kind in "biuf", f"{path}: dtype {obj.dtype}"
    else:
        assert obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor)), (
            f"{path}: {type(obj).__name__}"
        )


CHECKS: list[Callable[[str], None]] = [
    check_inputs_not_mutated,
    check_feature_order_irrelevant,
    check_features_appear_and_disappear,
    check_same_seed_same_predictions,
    check_state_dict_round_trip,
    check_snapshot_matches_learner,
    check_non_finite_step_skipped,
]
