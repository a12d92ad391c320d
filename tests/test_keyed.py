"""Per-key models without a broker: routing, LRU eviction, per-partition checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from keyed_stream import PartitionedSource, expected, keyed_events

from streamcl.events import EventDecoder
from streamcl.learning.learner import Learner
from streamcl.metrics import Metrics
from streamcl.models.keys import KeyedVersions
from streamcl.models.store import DirectoryStore
from streamcl.serving.errors import install_error_handlers
from streamcl.serving.keyed import add_keyed_predict_route
from streamcl.settings import Settings, load_settings
from streamcl.stream.keyed import KeyedLearner
from streamcl.stream.keyed_loop import KeyedCheckpoints, KeyedLoop
from streamcl.stream.keyed_publish import KeyPublisher
from streamcl.stream.partitions import PartitionStore, read_partition
from streamcl.stream.scores import PrequentialScore


def settings(tmp: Path, **learner: Any) -> Settings:
    return load_settings(
        None,
        source={"kind": "kafka", "target": None},
        learner={"hidden": [16], "batch_size": 1, "partitioning": "key", **learner},
        checkpoint={"dir": str(tmp)},
    )


def instance(s: Settings, source: PartitionedSource, store: DirectoryStore) -> KeyedCheckpoints:
    metrics = Metrics()
    keyed = KeyedLearner(s, PartitionStore(store, {"f": 1}, metrics), metrics)
    loop = KeyedLoop(
        source, keyed, EventDecoder(target=None), metrics, batch_size=s.learner.batch_size
    )
    cp = KeyedCheckpoints(loop, every_events=10**9, every_seconds=10**9)
    loop.after_step = cp.after_step
    return cp


def run(cp: KeyedCheckpoints, steps: int | None = None) -> None:
    n = 0
    while not cp.loop.source.exhausted and (steps is None or n < steps):  # type: ignore[union-attr]
        cp.loop.step()
        n += 1


def ledgers(store: DirectoryStore, partitions: int = 2) -> dict[str, tuple[int, str]]:
    out = {}
    for p in range(partitions):
        found = read_partition(store, f"k:{p}")
        assert found is not None
        for key, state in found[1].items():
            out[key] = (state["ledger"]["count"], state["ledger"]["digest"])
    return out


def accuracies(store: DirectoryStore, partitions: int = 2) -> dict[str, float]:
    out = {}
    for p in range(partitions):
        found = read_partition(store, f"k:{p}")
        assert found is not None
        for key, state in found[1].items():
            score = PrequentialScore()
            score.load_state_dict(state["score"])
            out[key] = score.summary()["accuracy"]
    return out


def solo_accuracy(s: Settings, events: list[dict[str, Any]]) -> float:
    learner = Learner(s.learner, plasticity=s.plasticity)
    score = PrequentialScore()
    decoder = EventDecoder(target=None)
    for e in events:
        event = decoder.decode_json(__import__("json").dumps(e).encode())
        (p,) = learner.predict_learn([event])
        score.update(p.label, event.label)
    return float(score.summary()["accuracy"])


def test_every_key_learns_its_own_events_once_and_equals_a_solo_learner(tmp_path: Path) -> None:
    pairs = keyed_events(600, keys=8)
    s = settings(tmp_path)
    source, store = PartitionedSource(pairs), DirectoryStore(tmp_path / "s")
    cp = instance(s, source, store)
    source.assign()
    run(cp)
    cp.checkpoint("end")
    assert ledgers(store) == expected(pairs)
    acc = accuracies(store)
    for key in ("key-000", "key-005"):
        alone = solo_accuracy(s, [e for k, e in pairs if k == key])
        assert acc[key] == alone  # batch_size 1: the same updates in the same order
    assert sum(acc.values()) / len(acc) > 0.7
    assert source.commits[-1] == source.next_offsets()


def test_lru_eviction_reloads_models_unchanged(tmp_path: Path) -> None:
    pairs = keyed_events(400, keys=8)
    results = []
    for limit in (1_000, 3):
        source, store = PartitionedSource(pairs), DirectoryStore(tmp_path / f"s{limit}")
        cp = instance(settings(tmp_path, max_live_models=limit), source, store)
        source.assign()
        run(cp)
        assert len(cp.keyed.models) <= limit
        cp.checkpoint("end")
        results.append((ledgers(store), accuracies(store)))
        m = cp.loop.metrics.registry
        evictions = m.get_sample_value("streamcl_keyed_evictions_total") or 0
        assert (evictions > 50) == (limit == 3)
    assert results[0] == results[1]


def test_a_partition_moves_to_another_instance_and_continues_exactly(tmp_path: Path) -> None:
    pairs = keyed_events(500, keys=6, seed=3)
    s = settings(tmp_path)
    store = DirectoryStore(tmp_path / "s")
    source = PartitionedSource(pairs)
    first = instance(s, source, store)
    source.assign()
    run(first, steps=20)
    first.checkpoint("periodic")
    run(first, steps=5)  # learned, never checkpointed: lost in the "crash"
    offsets = {p: o for p, o in read_partition_offsets(store).items()}
    source.next = {int(k.split(":")[1]): 0 for k in offsets}  # a new consumer
    second = instance(s, source, store)
    source.assign()  # restores the manifests, seeks to their offsets
    assert source.next_offsets() == offsets
    run(second)
    second.checkpoint("end")
    assert ledgers(store) == expected(pairs)
    whole = DirectoryStore(tmp_path / "w")
    again = PartitionedSource(pairs)
    uninterrupted = instance(s, again, whole)
    again.assign()
    run(uninterrupted)
    uninterrupted.checkpoint("end")
    assert accuracies(store) == accuracies(whole)


def read_partition_offsets(store: DirectoryStore) -> dict[str, int]:
    out = {}
    for p in range(2):
        found = read_partition(store, f"k:{p}")
        assert found is not None
        out[f"k:{p}"] = found[0]
    return out


def test_each_keys_model_is_published_and_served_by_key(tmp_path: Path) -> None:
    pairs = keyed_events(300, keys=4, seed=5)
    s = settings(tmp_path)
    source, store = PartitionedSource(pairs), DirectoryStore(tmp_path / "s")
    models = DirectoryStore(tmp_path / "models")
    cp = instance(s, source, store)
    publisher = KeyPublisher(models, "m", {}, keep=2)
    cp.on_saved = publisher.publish
    source.assign()
    run(cp, steps=4)
    cp.checkpoint("periodic")
    run(cp)
    cp.checkpoint("end")
    app = FastAPI()
    install_error_handlers(app)
    versions = KeyedVersions(models, "m", recheck_s=0.0)
    add_keyed_predict_route(app, s.server, EventDecoder(target=None), Metrics(), versions)
    client = TestClient(app)
    body = {"instances": [{"features": {"x": 0.3, "y": -0.2}}]}
    live = {m.key: m for m in cp.keyed.models.values()}
    for key in ("key-001", "key-002"):
        answer = client.post(f"/v1/models/{key}/predict", json=body)
        assert answer.status_code == 200, answer.text
        learner = live[key].learner
        assert answer.json()["model_version"] == learner.version  # the newest version
        event = EventDecoder(target=None).decode_json(
            b'{"id": "q", "features": {"x": 0.3, "y": -0.2}}'
        )
        (expected_p,) = learner.snapshot().predict([event])
        got = answer.json()["predictions"][0]["probabilities"]
        assert got == pytest.approx(
            {str(k): v for k, v in expected_p.probabilities.items()}, abs=1e-6
        )
    unknown = client.post("/v1/models/nobody/predict", json=body)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["reason"] == "unknown_key"
    assert unknown.json()["error"]["field"] == "key"
    assert publisher.published >= 8  # 4 keys, two checkpoints


def test_a_repeated_event_id_is_rejected_per_key_even_after_its_partition_moves(
    tmp_path: Path,
) -> None:
    pairs = keyed_events(300, keys=4, seed=7)
    repeats = [pairs[10], pairs[40], pairs[200], pairs[250]]  # sent again, later in the stream
    stream = pairs[:150] + repeats[:2] + pairs[150:] + repeats
    s = settings(tmp_path)
    store = DirectoryStore(tmp_path / "s")
    source = PartitionedSource(stream)
    first = instance(s, source, store)
    source.assign()
    run(first, steps=12)
    first.checkpoint("periodic")
    second = instance(s, source, store)  # the partitions move: windows restored with models
    source.next = {p: 0 for p in source.next}
    source.assign()
    run(second)
    second.checkpoint("end")
    assert ledgers(store) == expected(pairs)  # each id learned once, repeats never
    counted = [
        cp.loop.metrics.registry.get_sample_value(
            "streamcl_rejected_events_total", {"reason": "duplicate_id"}
        )
        or 0
        for cp in (first, second)
    ]
    assert sum(counted) == first.loop.rejected + second.loop.rejected == 6
    assert counted[1] >= 4  # the last four, two of them learned before the move
