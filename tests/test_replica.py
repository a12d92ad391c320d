"""The serving replica in-process: it loads, verifies and swaps versions, refuses bad ones,
predicts exactly as the learner's own snapshot, and rides out an object-store outage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from s3_server import MotoServer
from sources import ListSource, elec2_rows

from streamcl.metrics import Metrics
from streamcl.models.keys import KeyedVersions, key_model_name
from streamcl.models.registry import ModelRegistry, registry_from_settings
from streamcl.models.version import encode_version, model_fingerprint
from streamcl.service import Service
from streamcl.serving.replica import Replica
from streamcl.serving.replica_app import create_replica_app
from streamcl.settings import Settings, load_settings


def _values(n: int, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(elec2_rows(start + n)[start:]):
        label = int(row.pop("class"))
        features = {k: float(v) for k, v in row.items()}
        out.append({"id": str(start + i), "features": features, "label": label})
    return out


def _settings(store: str, **models: Any) -> Settings:
    return load_settings(
        source={"kind": "none", "read_batch": 200},
        models={"store": store, "publish_every_events": 400, "gate_window": 0, **models},
        serve={"poll_interval_s": 0.05, "max_staleness_s": 1.0},
    )


def _learn(service: Service, n: int, start: int = 0) -> None:
    source = ListSource(_values(n, start))
    service.loop.source = source
    while not source.exhausted:
        service.loop.step()
        assert service.loop.after_step is not None
        service.loop.after_step()


def _replica(settings: Settings) -> Replica:
    registry = registry_from_settings(settings)
    assert registry is not None
    return Replica(registry, model_fingerprint(settings), settings.serve, Metrics())


def test_replica_predicts_exactly_as_the_learners_snapshot(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "models"))
    service = Service(settings)
    _learn(service, 1200)
    replica = _replica(settings)
    instances = [{"features": v["features"]} for v in _values(50, start=1200)]
    with TestClient(create_replica_app(replica, settings)) as client:
        assert client.get("/readyz").status_code == 200
        body = client.post("/v1/predict", json={"instances": instances}).json()
        info = client.get("/v1/model").json()
        metrics = client.get("/metrics").text
    assert replica.model is not None
    version = replica.model.version
    assert body["model_version"] == version == info["model_version"]
    # the learner's own snapshot of that version: the one it promoted last
    events = [service.decoder.validate({"id": str(i), **x}) for i, x in enumerate(instances)]
    want = service.publisher.gate.champion.predict(events)  # type: ignore[union-attr]
    got = body["predictions"]
    assert [p.label for p in want] == [p["label"] for p in got]
    a = np.array([[p.probabilities[k] for k in sorted(p.probabilities)] for p in want])
    b = np.array([[p["probabilities"][k] for k in sorted(p["probabilities"])] for p in got])
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert f"streamcl_model_version {float(version)}" in metrics
    assert 'streamcl_model_loads_total{outcome="loaded"} 1.0' in metrics
    assert "streamcl_model_age_seconds" in metrics


def test_not_ready_before_a_version_and_follows_new_ones_forward(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "models"))
    replica = _replica(settings)
    assert replica.ready() == (False, "no model version loaded")
    with TestClient(create_replica_app(replica, settings)) as client:
        r = client.post("/v1/predict", json={"instances": [{"features": {"x": 1.0}}]})
        assert r.status_code == 503 and r.json()["error"]["reason"] == "not_ready"
        assert client.get("/readyz").status_code == 503
        bad = client.post("/v1/predict", json={"instances": [{"features": {"x": "a" * 999}}]})
        assert bad.status_code == 422 and bad.json()["error"]["field"].startswith("instances.0")
    service = Service(settings)
    _learn(service, 800)
    assert replica.poll() and replica.model is not None
    first = replica.model.version
    _learn(service, 800, start=800)
    assert replica.poll() and replica.model.version > first


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "incompatible"])
def test_bad_versions_are_refused_and_the_previous_one_stays(tmp_path: Path, damage: str) -> None:
    settings = _settings(str(tmp_path / "models"))
    service = Service(settings)
    _learn(service, 800)
    replica = _replica(settings)
    assert replica.poll() and replica.model is not None
    served = replica.model.version
    registry: ModelRegistry = service.registry  # type: ignore[assignment]
    version = registry.next_version()
    fingerprint = model_fingerprint(settings)
    if damage == "incompatible":
        fingerprint = {**fingerprint, "learner": {**fingerprint["learner"], "hidden": [3]}}
    data, _ = encode_version(service.loop.snapshot, version, "streamcl", time.time(), fingerprint)
    if damage == "flipped_byte":
        flipped = bytearray(data)
        flipped[-50] ^= 0x10
        data = bytes(flipped)
    elif damage == "truncated":
        data = data[: len(data) // 2]
    registry.put_version(version, data)
    registry.promote({"version": version, "sha256": None, "created": time.time()})
    assert not replica.poll()
    assert replica.model.version == served
    reason = "incompatible" if damage == "incompatible" else "checksum"
    text = replica.metrics.exposition().decode()
    assert f'streamcl_model_loads_total{{outcome="{reason}"}} 1.0' in text
    assert replica.describe()["refused"] == [{"version": version, "reason": reason}]
    replica.poll()  # refused once, not reloaded at every poll
    text = replica.metrics.exposition().decode()
    assert f'streamcl_model_loads_total{{outcome="{reason}"}} 1.0' in text


def test_store_outage_keeps_serving_turns_not_ready_and_recovers(
    s3_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(f"s3://{s3_bucket}/models", s3_endpoint_url=s3_server.endpoint)
    service = Service(settings)
    _learn(service, 800)
    replica = _replica(settings)
    instances = [{"features": v["features"]} for v in _values(5)]
    with TestClient(create_replica_app(replica, settings)) as client:
        assert client.get("/readyz").status_code == 200
        served = replica.model.version  # type: ignore[union-attr]
        s3_server.stop()
        try:
            deadline = time.monotonic() + 15
            while client.get("/readyz").status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            r = client.get("/readyz")
            assert r.status_code == 503 and "store" in r.json()["status"]
            ok = client.post("/v1/predict", json={"instances": instances})
            assert ok.status_code == 200 and ok.json()["model_version"] == served
            _learn(service, 400, start=800)  # the learner fails to publish, logs, goes on
        finally:
            s3_server.start()
        s3_server.create_bucket(s3_bucket)  # moto restarts empty
        deadline = time.monotonic() + 15
        _learn(service, 400, start=1200)
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200
        assert replica.model.version > served  # type: ignore[union-attr]
    text = service.metrics.exposition().decode()
    assert 'streamcl_model_versions_published_total{outcome="failed"}' in text


def test_replica_serves_each_keys_newest_version_and_404s_an_unknown_key(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "models"))
    service = Service(settings)
    _learn(service, 800)
    replica = _replica(settings)
    store = replica.registry.store
    fingerprint = model_fingerprint(settings)
    key = ModelRegistry(store, key_model_name(replica.registry.name, "device-7"))
    data, _ = encode_version(service.loop.snapshot, 5, key.name, time.time(), fingerprint)
    key.put_version(5, data)
    key.promote({"version": 5, "sha256": None, "created": time.time()})
    keyed = KeyedVersions(store, replica.registry.name, fingerprint, recheck_s=0.0)
    instances = {"instances": [{"features": _values(1)[0]["features"]}]}
    with TestClient(create_replica_app(replica, settings, keyed=keyed)) as client:
        r = client.post("/v1/models/device-7/predict", json=instances)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == 5
        want = service.loop.snapshot.predict(
            [service.decoder.validate({"id": "0", **instances["instances"][0]})]
        )
        assert r.json()["predictions"][0]["label"] == want[0].label
        missing = client.post("/v1/models/device-8/predict", json=instances)
        assert missing.status_code == 404 and missing.json()["error"]["reason"] == "unknown_key"
