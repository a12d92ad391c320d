"""End-to-end Kafka throughput: elec2 through tansu into the service until the lag is 0.

elec2 is produced to a local tansu broker, then consumed, decoded, predicted and learned.

Prints produce rate, end-to-end events/s (first poll to last event learned) and the time
until the lag gauge reads 0. Usage::

    .venv/bin/python benchmarks/kafka_throughput.py [--events 45312] [--batch-size 256]
        [--partitions 2] [--predictions]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from kafka_broker import TansuBroker, unique_topic
from streamcl.connectors.kafka import KafkaSource

from streamcl.events import EventDecoder
from streamcl.produce import load_events, produce_events
from streamcl.service import Service
from streamcl.settings import load_settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=45_312, help="events of elec2 to produce")
    p.add_argument("--batch-size", type=int, default=256, help="learner micro-batch")
    p.add_argument("--max-poll-records", type=int, default=2_000)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--predictions", action="store_true", help="also produce predictions")
    p.add_argument("--learner", default="{}", help="extra learner settings, JSON")
    args = p.parse_args()
    broker = TansuBroker().start()
    try:
        topic = broker.create_topic(unique_topic("bench"), args.partitions)
        preds = broker.create_topic(unique_topic("bench-preds")) if args.predictions else None
        events = list(load_events("builtin://elec2", limit=args.events))
        t0 = time.perf_counter()
        produce_events(events, topic, broker.bootstrap)
        produce_s = time.perf_counter() - t0
        consume_s, decode_s = _source_only(broker.bootstrap, topic, len(events))
        settings = load_settings(
            None,
            source={"kind": "kafka", "target": "class"},
            learner={"batch_size": args.batch_size, **json.loads(args.learner)},
            kafka={
                "bootstrap_servers": broker.bootstrap,
                "topic": topic,
                "group_id": f"g-{topic}",
                "predictions_topic": preds,
                "session_timeout_ms": 2000,
                "heartbeat_interval_ms": 500,
                "fetch_max_wait_ms": 100,
                "max_poll_records": args.max_poll_records,
                "commit_interval_s": 1.0,
            },
        )
        service = Service(settings)
        loop, registry = service.loop, service.metrics.registry
        started = time.perf_counter()
        first = done = lag_zero = None
        while time.perf_counter() - started < 300:
            loop.step(timeout_s=0.1)
            now = time.perf_counter()
            if first is None and loop.events_handled:
                first = now
            if done is None and loop.events_handled >= len(events):
                done = now
            lags = [
                registry.get_sample_value(
                    "streamcl_consumer_lag", {"topic": topic, "partition": str(i)}
                )
                for i in range(args.partitions)
            ]
            if done is not None and all(v == 0 for v in lags):
                lag_zero = now
                break
        service.stop()
        assert done is not None and first is not None and lag_zero is not None, "did not finish"
        n = loop.events_handled
        print(
            json.dumps(
                {
                    "events": n,
                    "batch_size": args.batch_size,
                    "partitions": args.partitions,
                    "predictions_topic": bool(preds),
                    "produce_events_per_s": round(n / produce_s),
                    "source_only_records_per_s": round(n / consume_s),
                    "source_and_decode_events_per_s": round(n / decode_s),
                    "join_to_first_event_s": round(first - started, 2),
                    "end_to_end_events_per_s": round(n / (done - first)),
                    "end_to_end_incl_group_join_events_per_s": round(n / (done - started)),
                    "seconds_until_lag_0": round(lag_zero - started, 2),
                    "prequential_accuracy": round(loop.score.accuracy, 4),
                }
            )
        )
    finally:
        broker.stop()


def _source_only(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    """Seconds to read ``n`` records with the bare source; then to read and decode them."""
    out = []
    for decode in (False, True):
        config = {"bootstrap_servers": bootstrap, "group_id": None, "auto_offset_reset": "earliest"}
        source = KafkaSource([topic], config)
        decoder = EventDecoder(target="class")
        seen, t0 = 0, time.perf_counter()
        while seen < n and time.perf_counter() - t0 < 120:
            records = source.read(2_000, 0.1)
            if decode:
                for r in records:
                    decoder.decode_json(r.value)  # type: ignore[arg-type]
            seen += len(records)
        out.append(time.perf_counter() - t0)
        source.close()
    return out[0], out[1]


if __name__ == "__main__":
    main()
