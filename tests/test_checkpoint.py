"""Checkpoints: encoding without pickle, verification, retention, fallback, restore."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from streamcl.errors import CheckpointError
from streamcl.events import Event
from streamcl.service import Service
from streamcl.serving.api import create_app
from streamcl.settings import load_settings
from streamcl.stream.checkpoint import LogRegressedError
from streamcl.stream.checkpoint_store import (
    MAGIC,
    Checkpointer,
    IncompatibleCheckpointError,
    pack,
    settings_fingerprint,
    unpack,
)
from streamcl.stream.dedup import ids_digest


def write_jsonl(path: Path, n: int, start: int = 0) -> list[str]:
    ids = [f"ev-{i}" for i in range(start, start + n)]
    with path.open("w") as fh:
        for i, event_id in enumerate(ids, start):
            x = math.sin(i / 7.0)
            fh.write(
                json.dumps(
                    {"id": event_id, "features": {"x": x, "c": "ab"[i % 2]}, "label": int(x > 0)}
                )
                + "\n"
            )
    return ids


def make_settings(tmp_path: Path, n: int = 400, **checkpoint: object):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "events.jsonl"
    if not data.exists():
        write_jsonl(data, n)
    return load_settings(
        source={"kind": "file", "path": str(data), "target": None, "read_batch": 16},
        checkpoint={"dir": str(tmp_path / "ckpt"), "every_events": 10_000, **checkpoint},
        learner={"hidden": [8], "batch_size": 16, "memory": {"snapshot_every": 1}},
    )


def run_steps(service: Service, steps: int) -> None:
    for _ in range(steps):
        service.loop.step(0.0)


# -- encoding -------------------------------------------------------------------------------------
def test_pack_round_trips_tensors_arrays_and_plain_data() -> None:
    state = {
        "w": torch.randn(3, 4),
        "index": np.arange(10, dtype=np.uint8),
        "ints": {0: {"step": torch.tensor(2.0)}, 1: "x"},
        "betas": (0.9, 0.999),
        "nan": float("nan"),
        "labels": [1, "a", None],
    }
    back = unpack(pack(state))
    assert torch.equal(back["w"], state["w"])
    assert isinstance(back["index"], np.ndarray) and back["index"].dtype == np.uint8
    assert back["ints"][0]["step"].item() == 2.0 and back["ints"][1] == "x"
    assert back["betas"] == (0.9, 0.999)
    assert math.isnan(back["nan"])
    assert back["labels"] == [1, "a", None]


@pytest.mark.parametrize("value", [object(), np.array([object()]), {1, 2}])
def test_pack_refuses_values_that_would_need_pickle(value: object) -> None:
    with pytest.raises(CheckpointError, match="cannot checkpoint"):
        pack({"x": value})


def test_tampered_or_truncated_checkpoint_fails_its_checksum() -> None:
    data = bytearray(pack({"w": torch.ones(4), "n": 1}))
    data[-5] ^= 0x01
    with pytest.raises(CheckpointError, match="checksum"):
        unpack(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        unpack(bytes(data[:-100]))
    with pytest.raises(CheckpointError, match="magic"):
        unpack(b"PK\x03\x04" + bytes(data))


def test_signing_key_rejects_a_file_rewritten_without_it() -> None:
    signed = pack({"n": 1}, key=b"secret")
    assert unpack(signed, key=b"secret") == {"n": 1}
    with pytest.raises(CheckpointError, match="checksum"):
        unpack(signed, key=b"other")
    with pytest.raises(CheckpointError, match="checksum"):
        unpack(pack({"n": 2}), key=b"secret")  # recomputed plain SHA-256 is not enough


class _Evil:
    ran = False

    def __reduce__(self):  # runs on unpickle
        return (_mark_ran, ())


def _mark_ran() -> None:
    _Evil.ran = True


def test_a_pickled_object_with_a_valid_checksum_is_refused_and_never_run() -> None:
    import hashlib

    blob = io.BytesIO()
    torch.save({"t0": _Evil()}, blob)
    header = json.dumps({"x": {"__tensor__": "t0"}}).encode()
    payload = len(header).to_bytes(8, "big") + header + blob.getvalue()
    data = MAGIC + hashlib.sha256(payload).digest() + payload
    with pytest.raises(CheckpointError, match="does not decode"):
        unpack(data)
    assert not _Evil.ran


# -- the folder ----------------------------------------------------------------------------
def test_writes_are_atomic_and_only_the_last_k_are_kept(tmp_path: Path) -> None:
    (tmp_path / ".ckpt-000000000009.1.tmp").write_bytes(b"torn")  # left by a crash
    folder = Checkpointer(tmp_path, {"format": 1}, keep=2)
    assert not list(tmp_path.glob("*.tmp"))
    for i in range(5):
        info = folder.save({"i": i})
        assert info.size_bytes == info.path.stat().st_size and info.seconds >= 0
    assert [p.name for p in folder.paths()] == [
        "ckpt-000000000005.streamcl",
        "ckpt-000000000004.streamcl",
    ]
    assert not list(tmp_path.glob("*.tmp"))
    state, path = folder.load_latest()  # type: ignore[misc]
    assert state["i"] == 4 and path.name.endswith("5.streamcl")


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path) -> None:
    folder = Checkpointer(tmp_path, {"format": 1}, keep=3)
    folder.save({"i": 1})
    newest = folder.save({"i": 2}).path
    newest.write_bytes(newest.read_bytes()[:-10])  # torn write
    state, path = folder.load_latest()  # type: ignore[misc]
    assert state["i"] == 1 and path != newest
    folder.paths()[1].write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        folder.load_latest()


def test_an_empty_folder_has_no_checkpoint(tmp_path: Path) -> None:
    assert Checkpointer(tmp_path / "new", {"format": 1}).load_latest() is None


def test_incompatible_settings_are_refused_with_the_field_named(tmp_path: Path) -> None:
    s1 = make_settings(tmp_path)
    Checkpointer(tmp_path / "c", settings_fingerprint(s1)).save({"i": 1})
    s2 = load_settings(
        source=s1.source.model_dump(), learner={"hidden": [16, 16]}, checkpoint={"dir": None}
    )
    with pytest.raises(IncompatibleCheckpointError, match=r"learner\.hidden.*checkpoint.dir"):
        Checkpointer(tmp_path / "c", settings_fingerprint(s2)).load_latest()
    s3 = load_settings(
        source=s1.source.model_dump(), learner={**s1.learner.model_dump(), "lr": 0.5}
    )
    loaded = Checkpointer(tmp_path / "c", settings_fingerprint(s3)).load_latest()
    assert loaded is not None and loaded[0]["i"] == 1  # a tunable setting (lr) may change


# -- service integration -------------------------------------------------------------------
def test_restore_resumes_model_position_dedup_and_ledger(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    a = Service(settings)
    run_steps(a, 10)
    info = a.checkpoints.checkpoint("test")  # type: ignore[union-attr]
    assert info is not None and info.size_bytes > 0
    b = Service(settings)
    assert b.checkpoints.restored["position"] == {"file": 160}  # type: ignore[union-attr]
    assert b.source.position() == {"file": 160}  # type: ignore[union-attr]
    assert (b.loop.ledger.count, b.loop.ledger.digest) == (
        160,
        ids_digest(f"ev-{i}" for i in range(160)),
    )
    assert "ev-5" in b.loop.dedup and b.loop.score.n == a.loop.score.n
    assert b.loop.score.kappa == pytest.approx(a.loop.score.kappa)
    probe = [Event(id="p", features={"x": 0.3, "c": "a"})]
    pa, pb = a.loop.snapshot.predict(probe)[0], b.loop.snapshot.predict(probe)[0]
    assert pa.label == pb.label and pa.probabilities == pytest.approx(pb.probabilities)
    # both continue identically: same state, same next records
    run_steps(a, 5)
    run_steps(b, 5)
    assert a.loop.ledger.digest == b.loop.ledger.digest
    assert a.loop.snapshot.predict(probe)[0].probabilities == pytest.approx(
        b.loop.snapshot.predict(probe)[0].probabilities
    )


def test_triggers_every_n_events_or_t_seconds(tmp_path: Path) -> None:
    service = Service(make_settings(tmp_path, every_events=64, every_seconds=3600))
    loop, cp = service.loop, service.checkpoints
    assert cp is not None
    for _ in range(8):
        loop.step(0.0)
        loop.after_step()  # type: ignore[misc]
    assert len(cp.checkpointer.paths()) == 2  # after 64 and 128 events (keep=3)
    timed = Service(make_settings(tmp_path / "t", every_events=10_000, every_seconds=1.0))
    timed.loop.step(0.0)
    timed.loop.after_step()  # type: ignore[misc]
    assert timed.checkpoints.checkpointer.paths() == []  # type: ignore[union-attr]
    time.sleep(1.05)
    timed.loop.after_step()  # type: ignore[misc]
    assert len(timed.checkpoints.checkpointer.paths()) == 1  # type: ignore[union-attr]
    time.sleep(1.05)
    timed.loop.after_step()  # type: ignore[misc]  # nothing new: no checkpoint
    assert len(timed.checkpoints.checkpointer.paths()) == 1  # type: ignore[union-attr]


def test_stop_writes_a_final_checkpoint_covering_everything_handled(tmp_path: Path) -> None:
    service = Service(make_settings(tmp_path))
    service.start()
    deadline = time.monotonic() + 20
    while not service.source.exhausted and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.02)
    service.stop()
    folder = service.checkpoints.checkpointer  # type: ignore[union-attr]
    state = folder.load(folder.paths()[0])
    assert state["reason"] == "shutdown" and state["position"] == {"file": 400}
    assert state["state"]["ledger"]["count"] == 400


@pytest.mark.parametrize("policy", ["fail", "reset_to_earliest"])
def test_a_regressed_log_follows_the_configured_policy(tmp_path: Path, policy: str) -> None:
    settings = make_settings(tmp_path, on_regressed_log=policy)
    service = Service(settings)
    run_steps(service, 10)
    service.checkpoints.checkpoint("test")  # type: ignore[union-attr]
    write_jsonl(tmp_path / "events.jsonl", 50, start=1000)  # the log lost data: 50 < 160 rows
    if policy == "fail":
        with pytest.raises(LogRegressedError, match=r"file ends at 50 < checkpointed 160"):
            Service(settings)
        return
    again = Service(settings)
    assert again.source.position() == {"file": 0}  # type: ignore[union-attr]
    run_steps(again, 5)
    assert again.loop.ledger.count == 160 + 50


def test_http_checkpoint_and_reset_are_messages_to_the_loop(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Service(settings)
    with TestClient(create_app(service)) as client:
        deadline = time.monotonic() + 20
        while service.loop.ledger.count < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = client.post("/v1/checkpoint")
        assert r.status_code == 200, r.text
        assert Path(r.json()["result"]["path"]).is_file()
        model = client.get("/v1/model").json()
        assert (
            model["learned_ids"] == 400
            and model["checkpoint"]["last"] == r.json()["result"]["path"]
        )
        r = client.post("/v1/reset")
        assert r.status_code == 200 and r.json()["result"]["model_version"] == 0
        assert client.get("/v1/model").json()["version"] == 0
    # the reset was checkpointed: a restart does not bring the old model back
    assert Service(settings).loop.learner.version == 0
