"""The predict hot path answers exactly as the FastAPI route, and passes everything else on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sources import ListSource, elec2_rows

from streamcl.metrics import Metrics
from streamcl.models.registry import registry_from_settings
from streamcl.models.version import model_fingerprint
from streamcl.service import Service
from streamcl.serving.fastpredict import INLINE_INSTANCES, FastPredictApp
from streamcl.serving.replica import Replica
from streamcl.serving.replica_app import create_replica_app
from streamcl.settings import load_settings


def _instances(n: int, start: int = 0) -> list[dict[str, Any]]:
    rows = elec2_rows(start + n)[start:]
    return [{"features": {k: float(v) for k, v in r.items() if k != "class"}} for r in rows]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = str(tmp_path_factory.mktemp("fastpredict") / "models")
    settings = load_settings(
        source={"kind": "none", "read_batch": 200},
        models={"store": store, "publish_every_events": 400, "gate_window": 0},
        serve={"max_staleness_s": 3600},
    )
    service = Service(settings)
    rows = elec2_rows(800)
    events = [
        {"id": str(i), "features": {k: float(v) for k, v in r.items() if k != "class"}}
        | {"label": int(r["class"])}
        for i, r in enumerate(rows)
    ]
    source = ListSource(events)
    service.loop.source = source
    while not source.exhausted:
        service.loop.step()
        assert service.loop.after_step is not None
        service.loop.after_step()
    registry = registry_from_settings(settings)
    assert registry is not None
    replica = Replica(registry, model_fingerprint(settings), settings.serve, Metrics())
    with TestClient(create_replica_app(replica, settings)) as c:
        yield c


def _chunked(body: bytes) -> Iterator[bytes]:
    """A body sent in chunks (no Content-Length): the hot path passes it on to the route."""
    yield body[:10]
    yield body[10:]


@pytest.mark.parametrize("n", [1, INLINE_INSTANCES + 3])
def test_hot_path_answers_exactly_as_the_route(client: TestClient, n: int) -> None:
    body = json.dumps({"instances": _instances(n, start=800)}).encode()
    fast = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    slow = client.post("/v1/predict", content=_chunked(body))
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.json() == slow.json()
    assert len(fast.json()["predictions"]) == n


def test_hot_path_counts_requests_and_latency(client: TestClient) -> None:
    def count() -> float:
        for line in client.get("/metrics").text.splitlines():
            head = line.startswith("streamcl_http_requests_total{")
            if head and 'route="/v1/predict"' in line and 'status="200"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def predictions() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("streamcl_predict_latency_seconds_count"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before, observed = count(), predictions()
    for _ in range(3):
        assert client.post("/v1/predict", json={"instances": _instances(1)}).status_code == 200
    assert count() == before + 3
    assert predictions() == observed + 3


def test_hot_path_answers_before_fastapis_own_middlewares(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastPredictApp) and app.middleware_stack is not None
    seen: list[str] = []
    stack = app.middleware_stack

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await stack(scope, receive, send)

    app.middleware_stack = recording
    try:
        assert client.post("/v1/predict", json={"instances": _instances(1)}).status_code == 200
        assert seen == []  # answered in front of FastAPI's stack
        bad = client.post("/v1/predict", json={"instances": []})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "instances"
        assert client.get("/healthz").status_code == 200
        assert seen == ["/v1/predict", "/healthz"]  # the rest go through all of it
    finally:
        app.middleware_stack = stack


@pytest.mark.parametrize(
    ("body", "status", "reason", "field"),
    [
        ({"instances": []}, 422, "invalid", "instances"),
        ({"instances": [{"features": {"nswprise": 1.0}}]}, 422, "unknown_feature", ""),
        ({"instances": [{"features": {}}], "extra": 1}, 422, "invalid", "extra"),
        ({"instances": [{"features": {"period": 1e31}}]}, 422, "non_finite", ""),
        ({"instances": [{"features": {"period": [1]}}]}, 422, "bad_type", ""),
    ],
)
def test_bad_requests_get_the_routes_error_body(
    client: TestClient, body: dict[str, Any], status: int, reason: str, field: str
) -> None:
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["reason"] == reason
    assert error["field"].startswith(field)
    assert error["detail"]


def test_other_content_types_and_bad_json_go_to_the_route(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b"a=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["reason"] == "unsupported_media_type"
    r = client.post(
        "/v1/predict", content=b'{"instances": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["reason"] == "bad_json"
    r = client.post("/v1/predict", content=b'{"instances": [{"features": {"period": NaN}}]}')
    assert r.status_code == 422 and r.json()["error"]["reason"] == "non_finite"
