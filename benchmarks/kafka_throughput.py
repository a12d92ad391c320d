"""End-to-end Kafka throughput: elec2 through tansu into the service until the lag is 0.

elec2 is produced to a local tansu broker, then consumed, decoded, predicted, learned and
(by default) each prediction produced to a predictions topic, by the service's own loop.

Prints (last line, JSON): produce rate, consume-only rate of kafka-python's source, of the
librdkafka source (``kafka.consumer_client: confluent-kafka``) and of a bare confluent-kafka
consumer side by side, end-to-end events/s (first poll to last event learned) for each
client pair (``runs``: ``<consumer client>/<producer client>``, the producer sending the
predictions), the time until the lag gauge reads 0, and what bounds the loop: the share of
the loop thread's wall time spent in poll, decode, learn and produce (``time_shares``), and
the process CPU seconds against the loop thread's (background client threads); ``bound_by``
names the largest share; ``best`` names the fastest run, whether it meets the 25,000
events/s target and what bounds it. Usage::

    .venv/bin/python benchmarks/kafka_throughput.py [--events 45312] [--batch-size 64]
        [--partitions 2] [--no-predictions]
"""

from __future__ import annotations

from streamcl.threads import freeze_heap, single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from kafka_broker import TansuBroker, unique_topic
from streamcl.connectors.base import Record
from streamcl.connectors.kafka import KafkaSource
from streamcl.connectors.kafka_rdsource import RdKafkaSource

from streamcl.events import EventDecoder
from streamcl.produce import load_events, produce_events
from streamcl.service import Service
from streamcl.settings import load_settings
from streamcl.stream.decode import BatchDecoder

#: Issue 17's end-to-end target, events/s.
TARGET = 25_000


class Shares:
    """Wall and CPU seconds spent in named parts of the loop thread (wrapped methods)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def reset(self) -> None:
        """Forget what was timed so far."""
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.cpu = dict.fromkeys(self.seconds, 0.0)

    def wrap(self, obj: Any, method: str, part: str) -> None:
        """Replace ``obj.method`` by a wrapper that adds its wall and thread time to ``part``."""
        inner: Callable[..., Any] = getattr(obj, method)
        self.seconds.setdefault(part, 0.0)
        self.cpu.setdefault(part, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - t0
                self.cpu[part] += time.thread_time() - c0

        setattr(obj, method, timed)

    def report(self, total_s: float) -> dict[str, float]:
        """Each part's share of ``total_s`` seconds, and ``other`` for the rest."""
        out = {k: round(v / total_s, 3) for k, v in self.seconds.items()}
        out["other"] = round(1 - sum(out.values()), 3)
        return out

    def per_event_us(self, n: int) -> dict[str, float]:
        """Each part's loop-thread CPU microseconds per event."""
        return {k: round(v / n * 1e6, 1) for k, v in self.cpu.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=45_312, help="events of elec2 to produce")
    p.add_argument("--batch-size", type=int, default=None, help="micro-batch (default: settings')")
    p.add_argument("--max-poll-records", type=int, default=None, help="default: settings'")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--no-predictions", action="store_true", help="no predictions topic")
    p.add_argument("--learner", default="{}", help="extra learner settings, JSON")
    p.add_argument("--kafka", default="{}", help="extra kafka settings, JSON")
    args = p.parse_args()
    broker = TansuBroker().start()
    try:
        topic = broker.create_topic(unique_topic("bench"), args.partitions)
        preds = None if args.no_predictions else broker.create_topic(unique_topic("preds"))
        events = list(load_events("builtin://elec2", limit=args.events))
        t0 = time.perf_counter()
        produce_events(events, topic, broker.bootstrap)
        produce_s = time.perf_counter() - t0
        n = len(events)
        figures: dict[str, Any] = {
            "events": n,
            "partitions": args.partitions,
            "predictions_topic": bool(preds),
            "produce_events_per_s": round(n / produce_s),
            **_source_only(broker.bootstrap, topic, n, args.partitions),
        }
        pairs = [("kafka-python", "kafka-python"), ("confluent-kafka", "confluent-kafka")]
        if preds:
            pairs.insert(1, ("kafka-python", "confluent-kafka"))
        figures["runs"] = {
            f"{consumer}/{producer}": _service_run(
                args, broker.bootstrap, topic, preds, n, consumer, producer
            )
            for consumer, producer in pairs
        }
        runs = figures["runs"]
        best = max(runs, key=lambda k: runs[k]["end_to_end_events_per_s"])
        figures["best"] = {
            "run": best,
            "end_to_end_events_per_s": runs[best]["end_to_end_events_per_s"],
            "target_events_per_s": TARGET,
            "target_met": runs[best]["end_to_end_events_per_s"] >= TARGET,
            "bound_by": runs[best]["bound_by"],
        }
        print(json.dumps(figures))
    finally:
        broker.stop()


def _service_run(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    preds: str | None,
    n: int,
    consumer: str,
    producer: str,
) -> dict[str, Any]:
    """Run the service's loop (its own consumer group) until all is learned and the lag is 0.

    ``consumer`` and ``producer`` are ``kafka.consumer_client`` (the events source) and
    ``kafka.producer_client`` (the client that produces the predictions).
    """
    learner = {**json.loads(args.learner)}
    if args.batch_size is not None:
        learner["batch_size"] = args.batch_size
    kafka: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": f"g-{topic}-{consumer}-{producer}",
        "consumer_client": consumer,
        "producer_client": producer,
        "predictions_topic": preds,
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 500,
        "fetch_max_wait_ms": 100,
        "commit_interval_s": 1.0,
        **json.loads(args.kafka),
    }
    if args.max_poll_records is not None:
        kafka["max_poll_records"] = args.max_poll_records
    settings = load_settings(
        None, source={"kind": "kafka", "target": "class"}, learner=learner, kafka=kafka
    )
    service = Service(settings)
    freeze_heap()  # as ``streamcl run`` does once the service is built
    loop, registry = service.loop, service.metrics.registry
    shares = Shares()
    assert loop.source is not None
    shares.wrap(loop.source, "read", "poll")
    shares.wrap(loop, "decode", "decode")
    shares.wrap(loop, "_process_in_batches", "learn")
    if loop.on_predictions is not None:
        shares.wrap(loop, "on_predictions", "produce")
    started = time.perf_counter()
    first = done = lag_zero = None
    cpu0 = thread0 = 0.0
    while time.perf_counter() - started < 300:
        loop.step(timeout_s=0.1)
        now = time.perf_counter()
        if first is None and loop.events_handled:
            first, cpu0, thread0 = now, time.process_time(), time.thread_time()
            shares.reset()
        if done is None and first is not None and loop.events_handled >= n:
            done, cpu1, thread1 = now, time.process_time(), time.thread_time()
            parts, per_event = shares.report(done - first), shares.per_event_us(n)
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
    return {
        "source": type(loop.source).__name__,
        "batch_size": settings.learner.batch_size,
        "max_poll_records": settings.kafka.max_poll_records,
        "join_to_first_event_s": round(first - started, 2),
        "end_to_end_events_per_s": round(loop.events_handled / (done - first)),
        "end_to_end_incl_group_join_events_per_s": round(loop.events_handled / (done - started)),
        "seconds_until_lag_0": round(lag_zero - started, 2),
        "time_shares": parts,
        "bound_by": max(parts, key=parts.__getitem__),
        "loop_cpu_us_per_event": per_event,
        "process_cpu_s": round(cpu1 - cpu0, 2),
        "loop_thread_cpu_s": round(thread1 - thread0, 2),
        "loop_wall_s": round(done - first, 2),
        "prequential_accuracy": round(loop.score.accuracy, 4),
    }


def _source_only(bootstrap: str, topic: str, n: int, partitions: int) -> dict[str, int]:
    """Records/s reading ``n`` records with the bare source, then reading and batch decoding.

    For both sources (KafkaSource, then RdKafkaSource: ``rdkafka_`` keys), timed from the
    first record read; and a bare confluent-kafka consumer's rate, for comparison.
    """
    out: dict[str, int] = {}
    decoder = BatchDecoder(EventDecoder(target="class"))
    sources: dict[str, Callable[[], Any]] = {
        "": lambda: KafkaSource(
            [topic],
            {"bootstrap_servers": bootstrap, "group_id": None, "auto_offset_reset": "earliest"},
        ),
        "rdkafka_": lambda: RdKafkaSource(
            [topic],
            {"bootstrap.servers": bootstrap, "group.id": None, "auto.offset.reset": "earliest"},
        ),
    }
    for prefix, make in sources.items():
        for key, decode in (("source_only", False), ("source_and_decode", True)):
            source = make()
            seen, t0, deadline = 0, None, time.perf_counter() + 120
            while seen < n and time.perf_counter() < deadline:
                before = time.perf_counter()
                records = source.read(2_000, 0.1)
                if records and t0 is None:
                    t0 = before
                if decode:
                    decoder.decode(records)
                seen += len(records)
            rate = 0 if t0 is None else round(seen / (time.perf_counter() - t0))
            out[f"{prefix}{key}_records_per_s"] = rate
            source.close()
    for key, decode in (("consume", False), ("consume_and_decode", True)):
        rate = _confluent_consume(bootstrap, topic, n, partitions, decoder if decode else None)
        out[f"confluent_kafka_{key}_records_per_s"] = rate
    return out


def _confluent_consume(
    bootstrap: str, topic: str, n: int, partitions: int, decoder: BatchDecoder | None
) -> int:
    """Records/s for confluent-kafka's ``consume(500)`` over the whole topic.

    With ``decoder``: each batch also made into records and decoded, as the loop would.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in range(partitions)])
    seen, t0 = 0, None
    deadline = time.perf_counter() + 120
    while seen < n and time.perf_counter() < deadline:
        before = time.perf_counter()
        batch = [m for m in consumer.consume(500, 0.1) if m.error() is None]
        if batch and t0 is None:
            t0 = before
        if decoder is not None:
            decoder.decode([_record(m) for m in batch])
        seen += len(batch)
    consumer.close()
    return 0 if t0 is None else round(seen / (time.perf_counter() - t0))


def _record(m: Any) -> Record:
    """A confluent-kafka message as the source's record (what a librdkafka source would do)."""
    kind, ts = m.timestamp()
    return Record(
        value=m.value() or b"",
        key=m.key(),
        topic=m.topic(),
        partition=m.partition(),
        offset=m.offset(),
        timestamp=ts / 1000.0 if kind else None,
        headers=tuple((h, v or b"") for h, v in m.headers() or ()),
    )


if __name__ == "__main__":
    main()
