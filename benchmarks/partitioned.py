"""Per-key models: throughput of 1 and 2 learner processes, and the restore time of a partition.

A keyed stream (``--keys`` keys, each its own concept) is learned by ``streamcl run``
learner subprocesses in one consumer group on a 4-partition tansu topic. The learners
start on the empty topic; once the group is stable the whole stream is produced at once,
and the clock runs until the learners together have learned every event. Each process's
CPU seconds are read from ``/proc`` as well: on a machine shared with other work the wall
clock is noisy, so ``*_cpu_eps`` (events / the busiest process's CPU seconds) is printed
beside the wall-clock figure.

``restore_100_models_s``: a partition with 100 trained models is checkpointed to a folder
store, then restored by a fresh instance (manifest read, then all 100 models loaded).

The last line is one JSON object. Usage::

    .venv/bin/python benchmarks/partitioned.py [--events 24000] [--keys 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from kafka import KafkaProducer
from kafka_broker import TansuBroker, unique_topic
from keyed_stream import keyed_events
from learners import Learner, kafka_config

from streamcl.events import EventDecoder
from streamcl.metrics import Metrics
from streamcl.models.store import DirectoryStore
from streamcl.settings import load_settings
from streamcl.stream.keyed import KeyedLearner
from streamcl.stream.partitions import PartitionStore

LEARNER = {"hidden": [64, 64], "batch_size": 32, "partitioning": "key"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_learners(broker: TansuBroker, n_proc: int, pairs: list[Any]) -> dict[str, float]:
    """Events/s of ``n_proc`` learners over ``pairs`` (wall clock and busiest CPU)."""
    topic = broker.create_topic(unique_topic("bench"), 4)
    tmp = Path(tempfile.mkdtemp(prefix="partitioned-"))
    config = {
        "source": {"kind": "kafka", "target": None, "read_batch": 512},
        "learner": LEARNER,
        "checkpoint": {"dir": str(tmp / "ckpt"), "every_events": 5_000, "every_seconds": 5.0},
        "kafka": {**kafka_config(broker.bootstrap, topic, f"g-{topic}"), "max_poll_records": 512},
    }
    learners = [Learner(tmp, f"l{i}", config) for i in range(n_proc)]
    try:
        for learner in learners:
            learner.wait_up()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the group is stable: every partition owned once
            owned = [p for lr in learners for p in lr.model()["partitions"]]
            if len(owned) == 4 and all(lr.model()["partitions"] for lr in learners):
                break
            time.sleep(0.2)
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap, linger_ms=20, batch_size=262_144
        )
        values = [(k.encode(), json.dumps(e).encode()) for k, e in pairs]
        cpu0 = [cpu_seconds(lr.popen.pid) for lr in learners]
        started = time.perf_counter()
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush()
        while sum(lr.model()["learned_ids"] for lr in learners) < len(pairs):
            time.sleep(0.05)
        wall = time.perf_counter() - started
        cpu = [cpu_seconds(lr.popen.pid) - c for lr, c in zip(learners, cpu0, strict=True)]
        producer.close()
    finally:
        for learner in learners:
            learner.stop()
    return {"eps": len(pairs) / wall, "cpu_eps": len(pairs) / max(cpu), "wall_s": wall}


def restore_100_models() -> float:
    """Seconds to restore a checkpointed partition of 100 trained models."""
    tmp = Path(tempfile.mkdtemp(prefix="restore-"))
    settings = load_settings(
        None,
        source={"kind": "kafka", "target": None},
        learner=LEARNER,
        checkpoint={"dir": str(tmp)},
    )
    decoder = EventDecoder(target=None)
    store = DirectoryStore(tmp / "store")
    metrics = Metrics()
    keyed = KeyedLearner(settings, PartitionStore(store, {}, metrics), metrics)
    keyed.store.acquire("t:0")
    pairs = keyed_events(100 * 64, 100)
    for key, event in pairs:
        model = keyed.model("t:0", key)
        model.learner.predict_learn([decoder.decode_json(json.dumps(event).encode())])
        model.dirty = True
    keyed.checkpoint({"t:0": len(pairs)})
    fresh = KeyedLearner(settings, PartitionStore(store, {}, metrics), metrics)
    started = time.perf_counter()
    fresh.store.acquire("t:0")
    for key in sorted({k for k, _ in pairs}):
        fresh.model("t:0", key)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=24_000)
    p.add_argument("--keys", type=int, default=40)
    args = p.parse_args()
    pairs = keyed_events(args.events, args.keys, seed=1)
    broker = TansuBroker().start()
    try:
        one = run_learners(broker, 1, pairs)
        two = run_learners(broker, 2, pairs)
    finally:
        broker.stop()
    restore = restore_100_models()
    print(f"1 process: {one['eps']:.0f} events/s wall, {one['cpu_eps']:.0f} per CPU second")
    print(f"2 processes: {two['eps']:.0f} events/s wall, {two['cpu_eps']:.0f} per busiest CPU s")
    print(
        f"speed-up: {two['eps'] / one['eps']:.2f}x wall, {two['cpu_eps'] / one['cpu_eps']:.2f}x CPU"
    )
    print(f"restore a partition of 100 models: {restore:.3f} s")
    print(
        json.dumps(
            {
                "one_process_eps": round(one["eps"], 1),
                "two_processes_eps": round(two["eps"], 1),
                "speedup_wall": round(two["eps"] / one["eps"], 3),
                "one_process_cpu_eps": round(one["cpu_eps"], 1),
                "two_processes_cpu_eps": round(two["cpu_eps"], 1),
                "speedup_cpu": round(two["cpu_eps"] / one["cpu_eps"], 3),
                "restore_100_models_s": round(restore, 3),
                "events": args.events,
                "keys": args.keys,
                "loaded_machine": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
