"""Announcements on Kafka (tansu): a replica that polls the store rarely still picks up a
promoted version within one announcement, and a late follower takes the newest version
although tansu does not compact the topic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka_broker import TansuBroker
from sources import ListSource, elec2_rows

from streamcl.metrics import Metrics
from streamcl.models.announce import AnnouncementFollower
from streamcl.models.registry import registry_from_settings
from streamcl.models.version import model_fingerprint
from streamcl.service import Service
from streamcl.serving.replica import Replica
from streamcl.settings import load_settings

pytestmark = pytest.mark.kafka


def _learn(service: Service, start: int, n: int) -> None:
    values = []
    for i, row in enumerate(elec2_rows(start + n)[start:]):
        label = int(row.pop("class"))
        values.append(
            {
                "id": str(start + i),
                "features": {k: float(v) for k, v in row.items()},
                "label": label,
            }
        )
    source = ListSource(values)
    service.loop.source = source
    while not source.exhausted:
        service.loop.step()
        assert service.loop.after_step is not None
        service.loop.after_step()


def test_announcement_wakes_the_replica_and_late_followers_take_the_newest(
    tmp_path: Path, kafka_broker: TansuBroker, new_topic: Any
) -> None:
    topic = new_topic("models")
    settings = load_settings(
        source={"kind": "none", "read_batch": 200},
        kafka={"bootstrap_servers": kafka_broker.bootstrap, "request_timeout_ms": 5000},
        models={
            "store": str(tmp_path / "m"),
            "publish_every_events": 400,
            "gate_window": 0,
            "announcements_topic": topic,
        },
        serve={"poll_interval_s": 60.0},  # only an announcement can wake it in time
    )
    service = Service(settings)
    registry = registry_from_settings(settings)
    assert registry is not None
    replica = Replica(registry, model_fingerprint(settings), settings.serve, Metrics())
    follower = AnnouncementFollower(settings.kafka, topic, "streamcl", replica.announced)
    replica.start()
    follower.start()
    try:
        _learn(service, 0, 400)
        deadline = time.monotonic() + 20
        while replica.model is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replica.model is not None and replica.model.version == 1
        _learn(service, 400, 1200)
        newest = registry.pointer()["version"]  # type: ignore[index]
        assert newest >= 3
        deadline = time.monotonic() + 20
        while replica.model.version != newest and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replica.model.version == newest
    finally:
        follower.stop()
        replica.stop()
    seen: list[dict[str, Any]] = []
    late = AnnouncementFollower(settings.kafka, topic, "streamcl", seen.append).start()
    try:
        deadline = time.monotonic() + 20
        while late.newest != newest and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        late.stop()
    assert late.newest == newest
    assert seen[-1]["version"] == newest and seen[-1]["uri"].endswith(f"v{newest:012d}.streamcl")
    assert {"sha256", "created", "offsets", "metrics"} <= set(seen[-1])
