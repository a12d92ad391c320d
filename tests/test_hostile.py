"""Hostile input: every bad record gets a reason, a count and a dead letter; the loop goes on."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sources import ListSource
from streamcl.connectors.base import Record

from streamcl.errors import DecodeError
from streamcl.events import Event, EventDecoder
from streamcl.learning.learner import Learner
from streamcl.service import Service
from streamcl.serving.api import create_app
from streamcl.settings import load_settings

OK = {"id": "a", "features": {"x": 1.0}, "label": 1}

#: payload -> (reason, field)
HOSTILE: list[tuple[bytes, str, str]] = [
    (b"{not json", "bad_json", ""),
    (b"\xff\xfe{}", "bad_encoding", ""),
    (b"[1, 2]", "not_object", ""),
    (b'"just a string"', "not_object", ""),
    (b"null", "not_object", ""),
    (b'{"features": {"x": 1}}', "missing_field", "id"),
    (b'{"id": "a"}', "missing_field", "features"),
    (b'{"id": "a", "features": {}, "extra": 1}', "extra_field", "extra"),
    (b'{"id": "a", "features": {"x": NaN}}', "non_finite", ""),
    (b'{"id": "a", "features": {"x": Infinity}}', "non_finite", ""),
    (b'{"id": "a", "features": {"x": 1e999}}', "non_finite", "features.x"),
    (b'{"id": "a", "features": {"x": 1' + b"0" * 400 + b"}}", "non_finite", "features.x"),
    (b'{"id": "a", "features": {"x": {"nested": 1}}}', "bad_type", "features.x"),
    (b'{"id": "a", "features": {"x": [1, 2]}}', "bad_type", "features.x"),
    (b'{"id": "a", "features": {"x": null}}', "bad_type", "features.x"),
    (b'{"id": 5, "features": {}}', "bad_type", "id"),
    (b'{"id": "a", "features": {}, "label": 1.5}', "bad_type", "label"),
    (b'{"id": "a", "features": {}, "label": [1]}', "bad_type", "label"),
    (b'{"id": "a", "features": {}, "label": true}', "bad_type", "label"),
    (b'{"id": "a", "features": {}, "label": 99999999999999999999999}', "bad_type", "label"),
    (b'{"id": "a", "features": {}, "ts": 1e12}', "bad_timestamp", "ts"),
    (b'{"id": "a", "features": {}, "ts": -5}', "bad_timestamp", "ts"),
    (b'{"id": "a", "features": {}, "ts": "yesterday"}', "bad_type", "ts"),
    (b"[" * 50 + b"]" * 50, "too_deep", ""),
    (b'{"id": "a", "features": {"x": "' + b"y" * 70_000 + b'"}}', "too_large", ""),
]


@pytest.mark.parametrize(("payload", "reason", "field"), HOSTILE)
def test_each_hostile_payload_is_rejected_with_its_reason(
    payload: bytes, reason: str, field: str
) -> None:
    with pytest.raises(DecodeError) as info:
        EventDecoder().decode_json(payload)
    assert info.value.reason == reason
    if field:
        assert info.value.field == field
    assert info.value.detail


def test_a_string_where_a_number_was_is_a_type_mismatch() -> None:
    service = Service(load_settings(source={"kind": "none"}))
    source = ListSource([{"id": "1", "features": {"x": 1.0}, "label": 0}])
    service.loop.source = source
    service.loop.step(0.0)
    with pytest.raises(DecodeError, match="type_mismatch"):
        service.loop.learner.featurizer.check(Event(id="2", features={"x": "one"}))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_decode_or_are_rejected_with_a_reason(raw: bytes) -> None:
    try:
        event = EventDecoder().decode_json(raw)
    except DecodeError as exc:
        assert exc.reason and isinstance(exc.field, str) and exc.detail
    else:
        assert isinstance(event, Event)


JSON_TYPE = {"content-type": "application/json"}

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
EVENTISH = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=300), JSON), "features": JSON},
    optional={"label": JSON, "ts": JSON, "extra": JSON},
) | st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=10), "features": st.dictionaries(st.text(max_size=8), JSON)}
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, EVENTISH))
def test_arbitrary_json_decodes_or_is_rejected_with_a_reason(value: Any) -> None:
    raw = json.dumps(value, allow_nan=True)
    try:
        event = EventDecoder().decode_json(raw.encode())
    except DecodeError as exc:
        assert exc.reason and exc.detail
    else:
        for v in event.features.values():
            assert isinstance(v, str) or math.isfinite(v)


class ListSink:
    def __init__(self) -> None:
        self.records: list[tuple[Record, str, str]] = []

    def send(self, record: Record, reason: str, field: str, detail: str, error: str) -> None:
        self.records.append((record, reason, field))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_loop_dead_letters_hostile_records_counts_them_and_goes_on() -> None:
    good = [{"id": f"g{i}", "features": {"x": float(i % 5)}, "label": i % 2} for i in range(40)]
    hostile = [payload for payload, _, _ in HOSTILE]
    values: list[Any] = []
    for i, g in enumerate(good):
        values.append(g)
        if i < len(hostile):
            values.append(hostile[i])
    values.append(good[3])  # a duplicate id
    service = Service(load_settings(source={"kind": "none"}, learner={"batch_size": 8}))
    sink = ListSink()
    service.loop.source = ListSource(values)
    service.loop.dead_letters = sink
    for _ in range(40):
        service.loop.step(0.0)
    assert service.loop.ledger.count == 40
    reasons = [reason for _, reason, _ in sink.records]
    assert len(reasons) == len(hostile) + 1 and reasons[-1] == "duplicate_id"
    assert sorted(reasons[:-1]) == sorted(r for _, r, _ in HOSTILE)
    text = service.metrics.exposition().decode()
    assert 'streamcl_rejected_events_total{reason="duplicate_id"} 1.0' in text
    assert 'streamcl_rejected_events_total{reason="non_finite"} 4.0' in text
    assert 'streamcl_dead_letter_total{reason="bad_json"} 1.0' in text


def test_a_non_finite_step_is_skipped_and_weights_stay_finite() -> None:
    settings_ = load_settings(learner={"hidden": [8], "memory": {"knn": False}})
    learner = Learner(settings_.learner, plasticity=settings_.plasticity)
    events = [Event(id=str(i), features={"x": float(i)}, label=i % 2) for i in range(16)]
    learner.predict_learn(events)
    x = np.full((4, learner.featurizer.n_columns), np.float32(3e38), dtype=np.float32)
    x[:, 0] = np.inf
    before = learner.skipped_steps
    learner.learn_matrix(x, [0, 1, 0, 1])
    assert learner.skipped_steps == before + 1
    assert learner.model is not None
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())
    preds = learner.predict_learn(events[:2])
    assert all(math.isfinite(v) for p in preds for v in p.probabilities.values())


# -- HTTP ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    service = Service(load_settings(source={"kind": "none"}, server={"max_body_bytes": 4_096}))
    with TestClient(create_app(service)) as c:
        yield c


def _assert_4xx_with_reason(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["reason"] and isinstance(err["field"], str)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=600), path=st.sampled_from(["/v1/events", "/v1/predict"]))
def test_http_arbitrary_bytes_never_5xx(client: TestClient, body: bytes, path: str) -> None:
    _assert_4xx_with_reason(client.post(path, content=body, headers=JSON_TYPE))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        JSON,
        st.fixed_dictionaries({"events": st.lists(st.one_of(EVENTISH, JSON), max_size=3)}),
        st.fixed_dictionaries({"instances": st.lists(JSON, max_size=3)}),
        st.fixed_dictionaries(
            {"instances": st.lists(st.fixed_dictionaries({"features": JSON}), max_size=3)}
        ),
    ),
    path=st.sampled_from(["/v1/events", "/v1/predict"]),
)
def test_http_arbitrary_json_never_5xx(client: TestClient, value: Any, path: str) -> None:
    r = client.post(path, content=json.dumps(value, allow_nan=True).encode(), headers=JSON_TYPE)
    _assert_4xx_with_reason(r)


@pytest.mark.parametrize(
    ("body", "status", "reason", "field"),
    [
        (
            b'{"events": [{"id": "h1", "features": {"x": 1e999}}]}',
            422,
            "non_finite",
            "events.0.features.x",
        ),
        (
            b'{"events": [{"id": "h1", "features": {"x": true, "y": {"z": 1}}}]}',
            422,
            "bad_type",
            "events.0.features.y",
        ),
        (
            b'{"events": [{"id": "h1", "features": {}, "label": 0.5}]}',
            422,
            "bad_type",
            "events.0.label",
        ),
        (b'{"events": [{"features": {}}]}', 422, "missing_field", "events.0.id"),
        (b'{"events": [], "x": 1}', 422, "invalid", ""),
        (b"{" * 100, 400, "too_deep", ""),
        (b'{"events": "' + b"a" * 5_000 + b'"}', 413, "too_large", ""),
    ],
)
def test_http_rejections_name_the_field(
    client: TestClient, body: bytes, status: int, reason: str, field: str
) -> None:
    r = client.post("/v1/events", content=body, headers=JSON_TYPE)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["reason"] == reason or (reason == "invalid" and r.status_code == 422)
    if field:
        assert err["field"] == field


def test_http_duplicate_event_ids_are_a_409_naming_the_field(client: TestClient) -> None:
    event = {"id": "dup-1", "features": {"x": 1.0}, "label": 1}
    assert client.post("/v1/events", json={"events": [event]}).status_code == 200
    r = client.post("/v1/events", json={"events": [{**event, "id": "dup-2"}, event]})
    assert r.status_code == 409
    assert r.json()["error"] == {
        "reason": "duplicate_id",
        "field": "events.1.id",
        "detail": "event id 'dup-1' seen",
    }
    assert "duplicate_id" in client.get("/metrics").text
