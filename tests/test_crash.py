"""Crash tests: the service as a subprocess, killed at random points, restarted.

Every event id must end up learned exactly once: the count and the order-independent
digest of learned ids (both checkpointed) must equal those of the N ids in the stream.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from learners import Learner

from streamcl.stream.checkpoint_store import Checkpointer, unpack
from streamcl.stream.dedup import ids_digest

N = 3_000
#: uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit 0 or "killed by SIGTERM".
GRACEFUL = (0, -signal.SIGTERM)


def write_events(path: Path, n: int) -> list[str]:
    ids = [f"id-{i:05d}-{random.getrandbits(32):08x}" for i in range(n)]
    with path.open("w") as fh:
        for i, event_id in enumerate(ids):
            x = math.sin(i / 11.0)
            event = {"id": event_id, "features": {"x": x, "y": i % 7}, "label": int(x > 0)}
            fh.write(json.dumps(event) + "\n")
    return ids


class Proc(Learner):
    """One ``streamcl run`` subprocess on a loopback port, replaying ``data``."""

    def __init__(
        self, tmp: Path, data: Path, rate: float, round_no: int, hidden: tuple[int, ...] = (16,)
    ) -> None:
        config = {
            "source": {"kind": "file", "path": str(data), "target": None, "rate": rate},
            "learner": {"hidden": list(hidden), "batch_size": 16},
            "checkpoint": {"dir": str(tmp / "ckpt"), "every_events": 200, "every_seconds": 0.5},
        }
        super().__init__(tmp, f"service-{round_no}", config)

    def wait_for(self, learned: int, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = self.model()
            if m["learned_ids"] >= learned or m["source"]["exhausted"]:
                return m
            time.sleep(0.01)
        raise AssertionError(f"no progress to {learned}: {self.model()}")

    def kill(self, sig: int) -> int:
        return self.stop(sig)


def finish(tmp: Path, data: Path, ids: list[str], round_no: int) -> dict[str, Any]:
    """Run a last round to the end of the stream; check exactly-once; stop it."""
    proc = Proc(tmp, data, 20_000, round_no)
    try:
        proc.wait_up()
        m = proc.wait_for(N + 1)
        deadline = time.monotonic() + 30
        previous: dict[str, Any] = {}
        # exhausted is set when the last read hits the end, before that batch is learned:
        # wait until the count is also stable
        while time.monotonic() < deadline and not (
            m["source"]["exhausted"] and m["learned_ids"] == previous.get("learned_ids")
        ):
            time.sleep(0.3)
            previous, m = m, proc.model()
        assert m["source"]["exhausted"]
        assert m["events_rejected"] == 0
        assert m["learned_ids"] == N
        assert m["learned_digest"] == ids_digest(ids)
        return m
    finally:
        assert proc.kill(signal.SIGTERM) in GRACEFUL


def test_sigkill_at_random_points_learns_every_event_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    data = tmp_path / "events.jsonl"
    ids = write_events(data, N)
    replayed = []
    for round_no in range(4):
        proc = Proc(tmp_path, data, rate=2_000, round_no=round_no)
        try:
            start = proc.wait_up()
            restored = start["checkpoint"]["restored"]
            restored_count = 0 if restored is None else restored["learned"]
            target = restored_count + rng.randint(100, 500)
            seen = proc.wait_for(target)["learned_ids"]
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            assert proc.kill(signal.SIGKILL) == -signal.SIGKILL
        replayed.append(seen - restored_count)
    finish(tmp_path, data, ids, round_no=99)
    # the checkpoints lag the model (every 200 events or 0.5 s): rounds were replayed
    assert all(r > 0 for r in replayed)


def test_sigterm_leaves_nothing_to_replay(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    ids = write_events(data, N)
    proc = Proc(tmp_path, data, rate=2_000, round_no=0)
    try:
        proc.wait_up()
        seen = proc.wait_for(N // 3)["learned_ids"]
    finally:
        assert proc.kill(signal.SIGTERM) in GRACEFUL
    folder = Checkpointer(tmp_path / "ckpt", {})
    newest = folder.paths()[0]
    state = unpack(newest.read_bytes())
    count = state["state"]["ledger"]["count"]
    assert state["reason"] == "shutdown"
    assert seen <= count < N
    assert state["position"] == {"file": count}  # every handled row was learned, no gap
    assert state["state"]["ledger"]["digest"] == ids_digest(ids[:count])
    again = Proc(tmp_path, data, rate=2_000, round_no=1)
    try:
        restored = again.wait_up()["checkpoint"]["restored"]
        assert restored["path"] == str(newest) and restored["learned"] == count
    finally:
        again.kill(signal.SIGKILL)
    finish(tmp_path, data, ids, round_no=2)


def test_a_checkpoint_from_other_settings_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    write_events(data, 100)
    first = Proc(tmp_path, data, 10_000, 0)
    first.wait_up()
    assert first.kill(signal.SIGTERM) in GRACEFUL
    second = Proc(tmp_path, data, 10_000, 1, hidden=(32, 32))
    assert second.popen.wait(60) == 2
    text = second.log.read_text()
    assert "incompatible" in text and "learner.hidden" in text and "checkpoint.dir" in text
