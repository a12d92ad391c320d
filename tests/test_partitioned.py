"""Per-key models over Kafka: learners scale 1 -> 2 -> 3 -> 2 with SIGKILLs, exactly once per key.

Learners are ``streamcl run`` subprocesses in one consumer group on a 4-partition topic;
their per-partition checkpoints share one folder store. At the end, every key's model must
have learned exactly its own events, once each: count and digest of ids per key, read from
the partitions' checkpoints, against what was produced.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from keyed_stream import expected, keyed_events
from learners import Learner, Producer, kafka_config

from streamcl.models.store import DirectoryStore
from streamcl.stream.partitions import read_partition

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS, KEYS, N = 4, 60, 6_000


def store_ledgers(store: DirectoryStore, topic: str) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for p in range(PARTITIONS):
        found = read_partition(store, f"{topic}:{p}")
        for key, state in ({} if found is None else found[1]).items():
            assert key not in out, f"key {key} has models on two partitions"
            out[key] = (state["ledger"]["count"], state["ledger"]["digest"])
    return out


def test_learners_scale_and_crash_and_every_key_learns_its_events_once(
    kafka_broker: Any, new_topic: Any, tmp_path: Path
) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    topic = new_topic("keyed", partitions=PARTITIONS)
    config = {
        "source": {"kind": "kafka", "target": None},
        "learner": {"hidden": [16], "batch_size": 8, "partitioning": "key"},
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every_events": 300, "every_seconds": 0.5},
        "kafka": kafka_config(kafka_broker.bootstrap, topic, f"g-{topic}"),
    }
    pairs = keyed_events(N, KEYS, seed=rng.randrange(1000))
    producer = Producer(kafka_broker.bootstrap, topic, pairs, rate=250)
    names = iter(f"learner-{i}" for i in range(100))
    live = [Learner(tmp_path, next(names), config)]
    live[0].wait_up()
    producer.start()
    kills = 0
    try:

        def scale_to(n: int) -> None:
            while len(live) < n:
                live.append(Learner(tmp_path, next(names), config))
                live[-1].wait_up()
            time.sleep(rng.uniform(2.0, 5.0))

        def kill_one() -> None:
            nonlocal kills
            victim = live.pop(rng.randrange(len(live)))
            assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
            kills += 1

        scale_to(2)  # 1 -> 2
        kill_one()
        scale_to(2)  # a SIGKILL, replaced
        scale_to(3)  # 2 -> 3
        kill_one()  # 3 -> 2
        time.sleep(rng.uniform(1.0, 3.0))
        kill_one()
        scale_to(2)
        producer.join(120)
        assert producer.sent == N
        store = DirectoryStore(tmp_path / "ckpt" / "partitions")
        want = expected(pairs)
        deadline = time.monotonic() + 90
        while store_ledgers(store, topic) != want and time.monotonic() < deadline:
            time.sleep(1.0)
    finally:
        for learner in live:
            learner.stop(signal.SIGTERM)
    got = store_ledgers(DirectoryStore(tmp_path / "ckpt" / "partitions"), topic)
    assert kills == 3
    assert len(got) == KEYS
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} keys learned the wrong events: {list(wrong.items())[:5]}"
