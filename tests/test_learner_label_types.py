"""A class label keeps its type: ``1`` and ``"1"`` never become two classes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sources import ListSource
from streamcl.connectors.base import Record

from streamcl.errors import DecodeError
from streamcl.events import EventDecoder
from streamcl.learning.learner import Learner
from streamcl.metrics import Metrics
from streamcl.settings import LearnerSettings
from streamcl.stream.labels import LabelJoin, PendingLabels
from streamcl.stream.prequential import PrequentialScore, StreamLoop


def _loop(values: list[Any]) -> StreamLoop:
    return StreamLoop(
        ListSource(values),
        Learner(LearnerSettings(batch_size=4)),
        EventDecoder(target="class"),
        Metrics(),
        batch_size=4,
        window=100,
    )


def _drain(loop: StreamLoop) -> None:
    assert loop.source is not None
    while not loop.source.exhausted:
        loop.step()


def test_a_string_label_after_integer_classes_is_a_type_mismatch() -> None:
    values: list[Any] = [
        {"id": str(i), "features": {"x": float(i)}, "label": i % 2} for i in range(12)
    ]
    values.append({"id": "s", "features": {"x": 1.0}, "label": "1"})
    loop = _loop(values)
    _drain(loop)
    assert loop.learner.classes == [0, 1]
    assert loop.rejected == 1
    text = loop.metrics.exposition().decode()
    assert 'streamcl_rejected_events_total{reason="type_mismatch"} 1.0' in text


def test_mixed_label_types_in_the_first_read_keep_the_first_type() -> None:
    values = [{"id": "a", "features": {"x": 0.0}, "label": "1"}]
    values += [{"id": "b", "features": {"x": 1.0}, "label": 1}]
    loop = _loop(values)
    _drain(loop)
    assert loop.learner.classes == ["1"] and loop.rejected == 1


def test_check_label_names_the_field() -> None:
    learner = Learner(LearnerSettings())
    learner.learn_matrix(np.zeros((2, 1), np.float32), ["a", "b"])
    learner.check_label("c")
    with pytest.raises(DecodeError) as info:
        learner.check_label(3)
    assert info.value.reason == "type_mismatch" and info.value.field == "label"
    Learner(LearnerSettings(task="regression")).check_label(2)


def test_a_delayed_label_of_another_type_is_rejected_not_learned() -> None:
    learner = Learner(LearnerSettings())
    learner.learn_matrix(np.zeros((2, 1), np.float32), [0, 1])
    join = LabelJoin(PendingLabels(), "labels", learner, PrequentialScore(100), Metrics())
    join.store.hold("e", np.zeros(1, np.float32), 0)
    rejected: list[DecodeError] = []
    record = Record(json.dumps({"id": "e", "label": "0"}).encode(), topic="labels")
    join.join([record], lambda r, exc: rejected.append(exc))
    assert [e.reason for e in rejected] == ["type_mismatch"]
    assert learner.classes == [0, 1] and learner.events_learned == 2
