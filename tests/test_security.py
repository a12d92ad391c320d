"""Security: bearer token on mutating endpoints, no secret in logs, limits, loopback bind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from streamcl.connectors.kafka_config import consumer_config, producer_config

from streamcl.service import Service
from streamcl.serving.api import create_app
from streamcl.settings import KafkaSettings, Settings, load_settings

TOKEN = "s3cr3t-t0ken-value"
EVENT = {"id": "e1", "features": {"x": 1.0}, "label": 1}


@pytest.fixture
def secured(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(
        source={"kind": "none"},
        server={"api_token": TOKEN},
        checkpoint={"dir": str(tmp_path / "ckpt")},
    )
    with TestClient(create_app(Service(settings))) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/events", {"events": [EVENT]}), ("/v1/checkpoint", None), ("/v1/reset", None)],
)
def test_every_mutating_endpoint_needs_the_bearer_token(
    secured: TestClient, path: str, body: object
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = secured.post(path, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["reason"] == "unauthorized"
    r = secured.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text


def test_reading_endpoints_need_no_token(secured: TestClient) -> None:
    assert secured.get("/v1/model").status_code == 200
    assert secured.get("/metrics").status_code == 200
    r = secured.post("/v1/predict", json={"instances": [{"features": {"x": 1.0}}]})
    assert r.status_code == 200


def test_the_token_is_never_shown_logged_or_checkpointed(
    secured: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    secured.post("/v1/events", json={"events": [EVENT]}, headers=auth)
    secured.post("/v1/events", json={"events": [EVENT]}, headers={"Authorization": "Bearer x"})
    secured.post("/v1/checkpoint", headers=auth)
    model = secured.get("/v1/model").text
    assert TOKEN not in model and "**********" in model
    assert TOKEN not in caplog.text
    assert TOKEN not in secured.get("/metrics").text
    files = list((tmp_path / "ckpt").iterdir())
    assert files and all(TOKEN.encode() not in f.read_bytes() for f in files)
    assert TOKEN not in repr(load_settings(server={"api_token": TOKEN}))


def test_server_binds_loopback_unless_configured() -> None:
    assert Settings().server.host == "127.0.0.1"
    assert load_settings(server={"host": "0.0.0.0"}).server.host == "0.0.0.0"


def test_request_body_size_is_limited(tmp_path: Path) -> None:
    settings = load_settings(source={"kind": "none"}, server={"max_body_bytes": 1_000})
    with TestClient(create_app(Service(settings))) as client:
        big = b'{"instances": [' + b'{"features": {"x": 1}},' * 100 + b"]}"
        r = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["reason"] == "too_large"
        chunks = (b"x" * 600 for _ in range(3))  # no content-length: streamed and cut
        r = client.post("/v1/predict", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_kafka_sasl_and_ssl_settings_are_passed_through() -> None:
    k = KafkaSettings(
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="pw",
        ssl_cafile="/etc/ca.pem",
        ssl_certfile="/etc/cert.pem",
        ssl_keyfile="/etc/key.pem",
    )
    for cfg in (consumer_config(k), producer_config(k)):
        assert cfg["security_protocol"] == "SASL_SSL"
        assert cfg["sasl_mechanism"] == "SCRAM-SHA-512"
        assert cfg["sasl_plain_username"] == "svc" and cfg["sasl_plain_password"] == "pw"
        assert (cfg["ssl_cafile"], cfg["ssl_certfile"], cfg["ssl_keyfile"]) == (
            "/etc/ca.pem",
            "/etc/cert.pem",
            "/etc/key.pem",
        )
    assert "pw" not in repr(k)


def test_over_the_memory_budget_the_service_is_not_ready_and_sheds_events() -> None:
    settings = load_settings(source={"kind": "none"}, server={"memory_budget_bytes": 1})
    with TestClient(create_app(Service(settings))) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and "above budget" in r.json()["status"]
        r = client.post("/v1/events", json={"events": [EVENT]})
        assert r.status_code == 503 and r.json()["error"]["reason"] == "over_memory_budget"
        assert client.post("/v1/predict", json={"instances": [{"features": {}}]}).status_code == 200


# -- schemathesis: the OpenAPI spec, fuzzed, finds no 5xx ------------------------------------------
_service = Service(load_settings(source={"kind": "none"}, server={"max_body_bytes": 65_536}))
_app = create_app(_service)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@pytest.fixture(scope="module", autouse=True)
def _running_service():  # type: ignore[no-untyped-def]
    _service.start()
    yield
    _service.stop()


@schema.parametrize()
@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_spec_fuzzing_finds_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
