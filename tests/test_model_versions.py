"""Model versions: the artifact round-trip, refusals, the registry (pin, rollback, pruning)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sources import elec2_rows

from streamcl.errors import ModelVersionError
from streamcl.events import Event
from streamcl.learning.learner import Learner
from streamcl.models.registry import ModelRegistry
from streamcl.models.store import DirectoryStore
from streamcl.models.version import decode_version, encode_version, model_fingerprint
from streamcl.settings import LearnerSettings, MemorySettings, load_settings


def _events(n: int, start: int = 0) -> list[Event]:
    out = []
    for i, row in enumerate(elec2_rows(start + n)[start:]):
        label = int(row.pop("class"))
        features: dict[str, float | str] = {k: float(v) for k, v in row.items()}
        features["day"] = ["mon", "tue", "wed"][i % 3]  # a one-hot column too
        out.append(Event(id=str(start + i), features=features, label=label))
    return out


def _learner(**memory: object) -> Learner:
    settings = LearnerSettings(label_lags=2, memory=MemorySettings(prototypes=True, **memory))
    learner = Learner(settings)
    events = _events(600)
    for i in range(0, len(events), 32):
        learner.predict_learn(events[i : i + 32])
    return learner


@pytest.mark.parametrize("space", ["input", "embedding"])
def test_round_trip_predicts_the_same_to_1e6(space: str) -> None:
    snapshot = _learner(space=space).snapshot()
    data, sha = encode_version(snapshot, 7, "m", 123.0, {"a": 1}, {"file": 600}, {"acc": 0.8})
    loaded = decode_version(data, {"a": 1}, sha)
    assert (loaded.version, loaded.model, loaded.created, loaded.sha256) == (7, "m", 123.0, sha)
    assert loaded.offsets == {"file": 600} and loaded.metrics == {"acc": 0.8}
    probe = _events(200, start=600)
    for with_labels in (False, True):
        batch = probe if with_labels else [e.model_copy(update={"label": None}) for e in probe]
        want, got = snapshot.predict(batch), loaded.predict(batch)
        assert [p.label for p in want] == [p.label for p in got]
        a = np.array([list(p.probabilities.values()) for p in want])
        b = np.array([list(p.probabilities.values()) for p in got])
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_flipped_byte_truncated_and_incompatible_are_refused() -> None:
    snapshot = _learner().snapshot()
    data, _ = encode_version(snapshot, 1, "m", 1.0, {"a": 1})
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    for bad in (bytes(flipped), data[: len(data) - 100], data[:10]):
        with pytest.raises(ModelVersionError) as info:
            decode_version(bad, {"a": 1})
        assert info.value.reason == "checksum"
    with pytest.raises(ModelVersionError, match="announced") as info:
        decode_version(data, {"a": 1}, sha256="0" * 64)
    with pytest.raises(ModelVersionError, match=r"a: checkpoint 1, settings 2") as info:
        decode_version(data, {"a": 2})
    assert info.value.reason == "incompatible"


def test_fingerprint_ignores_tunables_and_names_structure() -> None:
    base = load_settings()
    tuned = load_settings(learner={"lr": 0.01, "batch_size": 8})
    other = load_settings(learner={"hidden": [8]})
    assert model_fingerprint(base) == model_fingerprint(tuned)
    assert model_fingerprint(base) != model_fingerprint(other)


def _publish(reg: ModelRegistry, snapshot: object, version: int) -> dict[str, object]:
    data, sha = encode_version(snapshot, version, reg.name, float(version), {})  # type: ignore[arg-type]
    reg.put_version(version, data)
    return {"version": version, "sha256": sha, "created": float(version)}


def test_registry_promote_prune_pin_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(DirectoryStore(tmp_path), "m", keep=3)
    assert reg.target() is None and reg.next_version() == 1
    snapshot = _learner().snapshot()
    for v in range(1, 6):
        reg.promote(_publish(reg, snapshot, v))
    assert reg.versions() == [3, 4, 5]  # the newest keep=3 promoted versions
    target = reg.target()
    assert target is not None and (target.version, target.pinned) == (5, False)
    assert reg.load(5, {}, target.sha256).version == 5
    _publish(reg, snapshot, 6)
    reg.hold(6, "worse", {"events": 10})
    assert reg.next_version() == 7
    listing = reg.listing()
    assert listing["held"][0]["version"] == 6 and listing["held"][0]["reason"] == "worse"
    assert {r["version"]: r["status"] for r in listing["versions"]}[6] == "held"
    assert reg.rollback()["version"] == 4
    t = reg.target()
    assert t is not None and (t.version, t.pinned) == (4, True)
    assert reg.rollback()["version"] == 3  # again: one further back
    with pytest.raises(ModelVersionError):
        reg.rollback()
    reg.promote(_publish(reg, snapshot, 7))
    assert 3 in reg.versions()  # the pinned version is never pruned
    reg.unpin()
    t = reg.target()
    assert t is not None and (t.version, t.pinned) == (7, False)
    with pytest.raises(ModelVersionError):
        reg.pin(99)


def test_serving_imports_no_training_code() -> None:
    code = (
        "import sys\n"
        "import streamcl.serving.replica_app, streamcl.serving.api, streamcl.cli\n"
        "import streamcl.models.announce, streamcl.models.registry\n"
        "from streamcl.cli import _serve\n"
        "bad = [m for m in sys.modules if m.startswith(('streamcl.learning', 'streamcl.stream',"
        " 'river', 'sklearn', 'streamcl.service'))]\n"
        "assert not bad, bad\n"
        "import faiss\n"  # the same kNN kernel as the learner's, so the same predictions
        "assert faiss.cvar.distance_compute_blas_threshold == 4\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
