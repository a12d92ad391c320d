"""The HTTP input contract, error shape and safe defaults, against a real uvicorn server."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import FEATURES, elec2_events, live_server, raw_request

from streamcl.service import Service


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Service]]:
    with live_server(learn=200, header_timeout_s=1.0, body_timeout_s=1.0) as running:
        yield running


@pytest.fixture(scope="module")
def ingest_server() -> Iterator[tuple[str, Service]]:
    with live_server(learn=200) as running:
        yield running


def _instance(**changes: Any) -> dict[str, Any]:
    features = {**FEATURES, **changes}
    return {k: v for k, v in features.items() if v is not ...}


def _event(i: int, **changes: Any) -> dict[str, Any]:
    return {"id": f"h{i}-{time.monotonic_ns()}", "features": _instance(**changes), "label": 1}


# (name, features change, reason, field) for one instance / one event. On /v1/events, as on
# Kafka, a feature may appear or be absent (the stream's features change); a kind may not.
ON_INGEST_ACCEPTED = {"misspelled", "missing"}
HOSTILE = [
    ("misspelled", {"nswprise": 0.1}, "unknown_feature", "features.nswprise"),
    ("missing", {"nswprice": ...}, "missing_feature", "features.nswprice"),
    ("string_for_number", {"nswprice": "abc"}, "type_mismatch", "features.nswprice"),
    ("bool_for_number", {"nswprice": True}, "type_mismatch", "features.nswprice"),
    ("nested", {"nswprice": {"a": 1}}, "bad_type", "features.nswprice"),
    ("null", {"nswprice": None}, "bad_type", "features.nswprice"),
    ("huge", {"nswprice": 1e31}, "non_finite", "features.nswprice"),
]


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/events"])
@pytest.mark.parametrize(
    ("name", "change", "reason", "field"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_inputs_are_422_naming_the_field(
    server: tuple[str, Service],
    ingest_server: tuple[str, Service],
    path: str,
    name: str,
    change: Any,
    reason: str,
    field: str,
) -> None:
    url = server[0] if path == "/v1/predict" else ingest_server[0]  # ingest changes the schema
    if path == "/v1/predict":
        body: dict[str, Any] = {
            "instances": [{"features": FEATURES}, {"features": _instance(**change)}]
        }
        prefix = "instances.1."
    else:
        body = {"events": [_event(0), _event(1, **change)]}
        prefix = "events.1."
    r = httpx.post(url + path, json=body)
    if path == "/v1/events" and name in ON_INGEST_ACCEPTED:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["reason"], error["field"]) == (reason, prefix + field)
    assert error["detail"]


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/events"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"instances": []}'),
        ("application/x-www-form-urlencoded", b"instances=1"),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\n1\r\n--x--"),
    ],
)
def test_a_body_that_is_not_json_is_415(
    server: tuple[str, Service], path: str, content_type: str, body: bytes
) -> None:
    r = httpx.post(server[0] + path, content=body, headers={"content-type": content_type})
    assert r.status_code == 415
    assert r.json()["error"]["reason"] == "unsupported_media_type"


def test_404_and_405_have_the_error_shape(server: tuple[str, Service]) -> None:
    r = httpx.get(server[0] + "/nope")
    assert r.status_code == 404 and r.json()["error"]["reason"] == "not_found"
    r = httpx.get(server[0] + "/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["reason"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]


def test_uvicorn_level_400_has_the_error_shape(server: tuple[str, Service]) -> None:
    out = raw_request(
        server[0], b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert b'"reason": "bad_request"' in body


def test_slow_headers_and_slow_bodies_are_timed_out(server: tuple[str, Service]) -> None:
    started = time.monotonic()
    out = raw_request(server[0], b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")  # headers never end
    assert out.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4
    started = time.monotonic()
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    out = raw_request(server[0], head + b"Content-Length: 100\r\n\r\n{")  # body never ends
    assert out.startswith(b"HTTP/1.1 408") and b'"timeout"' in out
    assert time.monotonic() - started < 4


def test_missing_features_may_be_imputed_and_are_named() -> None:
    with live_server(learn=100, impute_missing=True) as (url, _):
        r = httpx.post(
            url + "/v1/predict", json={"instances": [{"features": _instance(nswprice=...)}]}
        )
    assert r.status_code == 200
    assert r.json()["imputed"] == ["instances.0.features.nswprice"]


def test_bearer_scheme_is_case_insensitive() -> None:
    with live_server(api_token="s3cret") as (url, _):
        body = {"events": elec2_events(2)}
        assert (
            httpx.post(
                url + "/v1/events", json=body, headers={"authorization": "bearer s3cret"}
            ).status_code
            == 200
        )
        r = httpx.post(url + "/v1/reset", headers={"authorization": "Basic s3cret"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_mutating_endpoints_are_disabled_unprotected_on_a_public_bind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fastapi.testclient import TestClient

    from streamcl.serving.api import create_app
    from streamcl.settings import load_settings

    settings = load_settings(source={"kind": "none"}, server={"host": "0.0.0.0"})
    with caplog.at_level(logging.WARNING, "streamcl.http"):
        app = create_app(Service(settings))
    assert "mutating endpoints" in caplog.text and "disabled" in caplog.text
    with TestClient(app) as client:
        for path in ("/v1/reset", "/v1/checkpoint"):
            r = client.post(path)
            assert r.status_code == 403 and r.json()["error"]["reason"] == "disabled"
        assert client.post("/v1/predict", json={"instances": [{"features": {}}]}).status_code == 200


def test_expected_4xx_and_disconnects_log_one_info_line(
    server: tuple[str, Service], caplog: pytest.LogCaptureFixture
) -> None:
    url = server[0]
    events = elec2_events(3, prefix=f"dup{time.monotonic_ns()}-")
    with caplog.at_level(logging.INFO):
        assert httpx.post(url + "/v1/events", json={"events": events}).status_code == 200
        assert httpx.post(url + "/v1/events", json={"events": events}).status_code == 409
        head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:  # goes away mid-body
            s.sendall(head + b"Content-Length: 100\r\n\r\n{")
        time.sleep(0.5)
    records = [r for r in caplog.records if r.name.startswith(("streamcl", "uvicorn"))]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    assert any("409 duplicate_id" in r.getMessage() for r in records), caplog.text
    assert any("client_disconnected" in r.getMessage() for r in records), caplog.text


def test_metrics_an_sre_expects(server: tuple[str, Service]) -> None:
    url, service = server
    httpx.post(url + "/v2/models/streamcl/infer", json={"inputs": []})
    httpx.get(url + "/no/such/path")
    text = httpx.get(url + "/metrics").text
    assert "process_resident_memory_bytes " in text and "python_info{" in text
    assert "streamcl_build_info{" in text and 'version="' in text
    assert (
        'streamcl_http_requests_total{method="POST",route="/v2/models/{model_name}/infer",status="422"}'
        in text
    )
    assert 'route="unmatched",status="404"' in text and "/no/such/path" not in text
    assert 'streamcl_http_request_duration_seconds_bucket{le="0.001",method="GET"' in text or (
        "streamcl_http_request_duration_seconds_count" in text
    )
    assert "streamcl_ready 1.0" in text
    # outcomes are exclusive: predicted + rejected = events received; learned is its own counter
    registry = service.metrics.registry
    predicted = registry.get_sample_value("streamcl_events_total", {"outcome": "predicted"}) or 0
    learned = registry.get_sample_value("streamcl_events_learned_total") or 0
    assert predicted >= 200 and learned >= 200
    assert 'outcome="learned"' not in text
