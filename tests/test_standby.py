"""Hot standby (partitioning: none): SIGKILL the active learner 5 times; a standby takes over.

A first round pauses the active one (SIGSTOP) past its session instead: once resumed it
must find its lease expired and never act as a second active.

Two ``streamcl run`` learners with ``learner.standby`` share a checkpoint folder; the owner
of the lock topic's one partition learns, the other waits. Each time the active one is
killed, the standby must take over from the last checkpoint, and at the end every event is
learned exactly once (count and digest of ids in the newest checkpoint).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from learners import Learner, Producer, kafka_config

from streamcl.models.format import unpack
from streamcl.stream.checkpoint_store import Checkpointer
from streamcl.stream.dedup import ids_digest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N = 6_000


def active(learners: list[Learner]) -> list[Learner]:
    out = []
    for learner in learners:
        try:
            if learner.client.get("/v1/model", timeout=0.5).json()["role"]["active"]:
                out.append(learner)
        except Exception:  # starting or dying
            continue
    return out


def zombie_round(live: list[Learner]) -> None:
    """Pause the active one past its session (SIGSTOP): it must stop learning when resumed."""
    deadline = time.monotonic() + 60
    while len(found := active(live)) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(found) == 1
    zombie = found[0]
    zombie.popen.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    while not active(live) and time.monotonic() - paused < 30:
        time.sleep(0.05)
    assert active(live), "the standby did not take over from a paused active"
    zombie.popen.send_signal(signal.SIGCONT)
    # Resumed, it must find its lease expired and stay a standby. Its rejoin rebalances the
    # lock group, so the lock may be revoked and granted again meanwhile: never two actives.
    for _ in range(30):
        found = active(live)
        assert len(found) <= 1 and zombie not in found, "two actives after a pause"
        time.sleep(0.1)


def test_the_standby_takes_over_each_time_the_active_is_killed(
    kafka_broker: Any, new_topic: Any, tmp_path: Path
) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    topic = new_topic("standby", partitions=2)
    config = {
        "source": {"kind": "kafka", "target": None},
        "learner": {"hidden": [16], "batch_size": 16, "standby": True},
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every_events": 300, "every_seconds": 0.5},
        "kafka": kafka_config(kafka_broker.bootstrap, topic, f"g-{topic}"),
    }
    events = [
        (f"k{i % 5}", {"id": f"ev-{i}", "features": {"x": (i % 17) / 17.0}, "label": i % 2})
        for i in range(N)
    ]
    names = iter(f"learner-{i}" for i in range(100))
    live = [Learner(tmp_path, next(names), config) for _ in range(2)]
    for learner in live:
        learner.wait_up()
    producer = Producer(kafka_broker.bootstrap, topic, events, rate=150)
    producer.start()
    takeovers: list[float] = []
    try:
        zombie_round(live)
        for _ in range(5):
            deadline = time.monotonic() + 30
            while len(found := active(live)) != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(found) == 1, "exactly one active learner"
            time.sleep(rng.uniform(0.5, 2.0))  # learning, mid-checkpoint-interval
            victim = found[0]
            live.remove(victim)
            assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
            killed = time.monotonic()
            while not active(live) and time.monotonic() - killed < 30:
                time.sleep(0.05)
            assert active(live), "the standby did not take over"
            takeovers.append(time.monotonic() - killed)
            live.append(Learner(tmp_path, next(names), config))
            live[-1].wait_up()
        producer.join(120)
        deadline, learned = time.monotonic() + 120, 0
        while time.monotonic() < deadline:
            found = active(live)
            learned = found[0].model()["learned_ids"] if found else learned
            if learned >= N:
                break
            time.sleep(0.5)
        assert learned >= N, f"the active learner learned {learned} of {N} events in time"
    finally:
        for learner in live:
            learner.stop(signal.SIGTERM)
    print(f"time to take over after SIGKILL, s: {[round(t, 2) for t in takeovers]}")
    assert len(takeovers) == 5
    newest = Checkpointer(tmp_path / "ckpt", {}).paths()[0]
    ledger = unpack(newest.read_bytes())["state"]["ledger"]
    assert ledger["count"] == N
    assert ledger["digest"] == ids_digest([e["id"] for _, e in events])
