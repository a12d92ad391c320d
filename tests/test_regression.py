"""Regression streams: numeric targets decoded, learned and scored by MAE/RMSE."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from sources import ListSource

from streamcl.errors import DecodeError
from streamcl.events import EventDecoder
from streamcl.service import Service
from streamcl.settings import load_settings
from streamcl.stream.scores import RegressionScore


def friedman(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Friedman #1 (Friedman 1991): y = 10 sin(pi x0 x1) + 20 (x2 - .5)^2 + 10 x3 + 5 x4 + e."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 5))
    y = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
        + rng.normal(0, 1, n)
    )
    return [
        {
            "id": str(i),
            "features": {f"x{j}": float(x[i, j]) for j in range(5)},
            "label": float(y[i]),
        }
        for i in range(n)
    ]


def test_regression_decoder_takes_numbers_and_refuses_strings() -> None:
    d = EventDecoder(task="regression")
    assert d.decode_json(b'{"id": "1", "features": {}, "label": 2.5}').label == 2.5
    assert d.decode_json(b'{"id": "1", "features": {}, "label": 3}').label == 3
    with pytest.raises(DecodeError) as info:
        d.decode_json(b'{"id": "1", "features": {}, "label": "up"}')
    assert (info.value.reason, info.value.field) == ("bad_type", "label")
    assert d.decode_row({"a": "1", "y": "2.75"}, 0).label is None  # no target configured
    assert (
        EventDecoder(target="y", task="regression").decode_row({"a": "1", "y": "2.75"}, 0).label
        == 2.75
    )


def test_a_regression_stream_is_learned_and_scored_by_error() -> None:
    events = friedman(4_000)
    settings = load_settings(source={"kind": "none"}, learner={"task": "regression"})
    service = Service(settings, source=ListSource(events))
    while not service.loop.source.exhausted:  # type: ignore[union-attr]
        service.loop.step(0.0)
    summary = service.loop.score.summary()
    assert summary["scored"] == 4_000
    ys = np.array([e["label"] for e in events])
    spread = float(np.mean(np.abs(ys - ys.mean())))  # MAE of the best constant prediction
    assert summary["window_mae"] < 0.6 * spread, (summary, spread)
    assert summary["rmse"] >= summary["mae"] > 0
    text = service.metrics.exposition().decode()
    assert "streamcl_prequential_mae " in text
    prediction = service.loop.snapshot.predict([service.decoder.validate(events[0])])[0]
    assert isinstance(prediction.label, float) and prediction.probabilities == {}


def test_regression_score_state_round_trips() -> None:
    a = RegressionScore(window=3)
    for p, y in [(1.0, 2.0), (None, 1.5), (3.0, 3.0), (0.0, -2.0)]:
        a.update(p, y)
    assert a.mae == pytest.approx((1 + 1.5 + 0 + 2) / 4)
    assert a.window_mae == pytest.approx((1.5 + 0 + 2) / 3)
    assert math.isnan(a.accuracy)
    b = RegressionScore(window=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.summary() == a.summary()
