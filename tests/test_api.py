"""HTTP API with httpx (FastAPI's TestClient) against the app, loop running."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from live_server import FEATURES
from sources import ListSource, elec2_rows

from streamcl.service import Service
from streamcl.serving.api import create_app
from streamcl.settings import load_settings


def _client(source: Any = None, **sections: Any) -> Iterator[TestClient]:
    settings = load_settings(source={"kind": "none"}, **sections)
    service = Service(settings, source=source)
    with TestClient(create_app(service)) as client:
        yield client


@pytest.fixture()
def client() -> Iterator[TestClient]:
    yield from _client()


def _events(n: int, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(elec2_rows(start + n)[start:]):
        label = int(row.pop("class"))
        out.append(
            {
                "id": str(start + i),
                "features": {k: float(v) for k, v in row.items()},
                "label": label,
            }
        )
    return out


def _wait_learned(client: TestClient, n: int) -> dict[str, Any]:
    for _ in range(200):
        model = client.get("/v1/model").json()
        if model["events_learned"] >= n:
            return model
        time.sleep(0.05)
    raise AssertionError(f"loop did not learn {n} events: {model}")


def test_predict_before_any_learning_has_no_label(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"instances": [{"features": FEATURES}]})
    assert r.status_code == 200
    assert r.json() == {
        "predictions": [{"label": None, "probabilities": {}}],
        "model_version": 0,
        "imputed": [],
    }


def test_events_are_predicted_then_learned(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": _events(64)})
    assert r.status_code == 200
    body = r.json()
    assert len(body["predictions"]) == 64 and body["model_version"] > 0
    model = client.get("/v1/model").json()
    assert model["events_learned"] == 64
    assert sorted(model["classes"]) == [0, 1]
    r = client.post("/v1/predict", json={"instances": [{"features": FEATURES}] * 3})
    preds = r.json()["predictions"]
    assert len(preds) == 3
    for p in preds:
        assert p["label"] in (0, 1)
        assert set(p["probabilities"]) == {"0", "1"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_never_learns(client: TestClient) -> None:
    client.post("/v1/events", json={"events": _events(16)})
    before = client.get("/v1/model").json()
    client.post("/v1/predict", json={"instances": [{"features": FEATURES}] * 5})
    after = client.get("/v1/model").json()
    assert after["version"] == before["version"]
    assert after["events_learned"] == before["events_learned"]


@pytest.mark.parametrize(
    ("body", "status", "reason", "field"),
    [
        (b"{not json", 400, "bad_json", ""),
        (b"[1]", 422, "invalid", ""),
        (b"{}", 422, "invalid", "instances"),
        (b'{"instances": []}', 422, "invalid", "instances"),
        (b'{"instances": [{"features": {"a": NaN}}]}', 422, "non_finite", ""),
        (
            b'{"instances": [{"features": {"a": 1e999}}]}',
            422,
            "non_finite",
            "instances.0.features.a",
        ),
        (
            b'{"instances": [{"features": {"a": {"b": 1}}}]}',
            422,
            "bad_type",
            "instances.0.features.a",
        ),
        (b'{"instances": [{"features": {}, "x": 1}]}', 422, "invalid", "instances.0.x"),
        (b'{"instances": [{"feature": {}}]}', 422, "invalid", "instances.0.features"),
    ],
)
def test_bad_predict_requests_get_4xx_naming_the_field(
    client: TestClient, body: bytes, status: int, reason: str, field: str
) -> None:
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["reason"] == reason
    assert err["field"] == field
    assert err["detail"]


def test_bad_event_in_a_batch_names_its_index(client: TestClient) -> None:
    events = _events(3)
    events[1]["features"]["nswprice"] = {"nested": 1}
    events[2]["ts"] = -5
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "events.1.features.nswprice"
    assert client.get("/v1/model").json()["events_learned"] == 0


def test_a_feature_changing_kind_within_one_request_is_rejected(client: TestClient) -> None:
    events = _events(3)
    events[2]["features"]["nswprice"] = "high"
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "events.2.features.nswprice"


def test_a_feature_changing_kind_is_rejected(client: TestClient) -> None:
    assert client.post("/v1/events", json={"events": _events(4)}).status_code == 200
    event = _events(1, start=4)[0]
    event["features"]["nswprice"] = "high"
    r = client.post("/v1/events", json={"events": [event]})
    assert r.status_code == 422
    assert r.json()["error"] == {
        "reason": "type_mismatch",
        "field": "events.0.features.nswprice",
        "detail": "expected a number, got 'high'",
    }


def test_oversized_body_is_413() -> None:
    for client in _client(server={"max_body_bytes": 1_000}):
        r = client.post("/v1/predict", json={"instances": [{"features": {"a": 1.0}}] * 100})
        assert r.status_code == 413
        assert r.json()["error"]["reason"] == "too_large"


def test_too_many_instances_is_413() -> None:
    for client in _client(server={"max_instances": 2}):
        r = client.post("/v1/predict", json={"instances": [{"features": {"a": 1.0}}] * 3})
        assert r.status_code == 413
        assert r.json()["error"]["field"] == "instances"


def test_events_need_the_bearer_token_when_configured() -> None:
    for client in _client(server={"api_token": "s3cret"}):
        body = {"events": _events(2)}
        assert client.post("/v1/events", json=body).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert client.post("/v1/events", json=body, headers=wrong).status_code == 401
        ok = {"authorization": "Bearer s3cret"}
        assert client.post("/v1/events", json=body, headers=ok).status_code == 200
        # reads stay open, and the token never appears in /v1/model
        assert (
            client.post("/v1/predict", json={"instances": [{"features": FEATURES}]}).status_code
            == 200
        )
        assert "s3cret" not in client.get("/v1/model").text


def test_health_and_readiness_follow_the_loop() -> None:
    source = ListSource(_events(200))
    for client in _client(source=source):
        assert client.get("/healthz").status_code == 200
        _wait_learned(client, 200)
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"


def test_not_ready_before_the_first_batch() -> None:
    for client in _client(source=ListSource([])):
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "no batch learned" in r.json()["status"]


def test_metrics_expose_the_stream(tmp_path: Path) -> None:
    for client in _client(source=ListSource(_events(300))):
        _wait_learned(client, 300)
        client.post("/v1/predict", json={"instances": [{"features": FEATURES}]})
        text = client.get("/metrics").text
    for needle in (
        "streamcl_events_learned_total 300.0",
        'streamcl_events_total{outcome="predicted"} 300.0',
        "streamcl_prequential_accuracy ",
        "streamcl_predict_latency_seconds_count 1.0",
        "streamcl_learn_batch_duration_seconds_count",
        "streamcl_model_version ",
    ):
        assert needle in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package 'prometheus'; .ci/run installs it)"
    (tmp_path / "m.txt").write_text(text)
    with (tmp_path / "m.txt").open() as fh:
        check = subprocess.run(
            [promtool, "check", "metrics"], stdin=fh, capture_output=True, text=True
        )
    assert check.returncode == 0, check.stdout + check.stderr


def test_openapi_documents_the_request_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "instances" in body["schema"]["properties"]
