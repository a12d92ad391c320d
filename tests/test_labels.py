"""The pending-label store: joins, early labels, bounds, TTL, checkpointable state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamcl.errors import DecodeError
from streamcl.stream.labels import PendingLabels, decode_label


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_event_then_label_joins_with_event_time_prediction():
    store = PendingLabels(clock=Clock())
    assert store.hold("a", np.array([1.0, 2.0]), predicted=0) is None
    pending = store.match("a", 1)
    assert pending is not None and pending.predicted == 0
    assert pending.row.dtype == np.float32 and pending.row.tolist() == [1.0, 2.0]
    assert len(store) == 0 and store.joined == 1


def test_label_before_event_waits_and_joins_on_hold():
    store = PendingLabels(clock=Clock())
    assert store.match("b", "x") is None
    assert store.hold("b", np.zeros(3), predicted=None) == "x"
    assert store.joined == 1 and not store.early and len(store) == 0


def test_bounds_and_ttl_count_expired_and_unmatched():
    clock = Clock()
    store = PendingLabels(max_size=2, ttl_s=10.0, clock=clock)
    for i in range(3):
        store.hold(f"e{i}", np.zeros(1), 0)
    assert list(store.events) == ["e1", "e2"] and store.expired == 1
    store.match("nobody", 1)
    clock.t += 11
    store.expire()
    assert len(store) == 0 and store.expired == 3
    assert not store.early and store.unmatched == 1


def test_state_dict_is_plain_json_and_round_trips():
    clock = Clock()
    store = PendingLabels(clock=clock)
    store.hold("a", np.array([0.5, -1.0], dtype=np.float32), predicted=1)
    store.match("early", "y")
    state = json.loads(json.dumps(store.state_dict()))
    again = PendingLabels(clock=clock)
    again.load_state_dict(state)
    assert again.state_dict() == store.state_dict()
    assert again.match("a", 0).row.tolist() == [0.5, -1.0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "bad_json"),
        (b"[1]", "not_object"),
        (b'{"label": 1}', "missing_field"),
        (b'{"id": "a", "label": 1.5}', "bad_type"),
        (b'{"id": "a", "label": 1, "x": 2}', "extra_field"),
    ],
)
def test_bad_label_records_raise_decode_error(raw, reason):
    with pytest.raises(DecodeError) as err:
        decode_label(raw)
    assert err.value.reason == reason


def test_good_label_record():
    label = decode_label(b'{"id": "a", "label": "up"}')
    assert (label.id, label.label) == ("a", "up")
