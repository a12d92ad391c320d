"""Load a CSV / JSONL file (or ``builtin://elec2``) into Kafka as JSON events.

Used by ``streamcl produce``, the Kafka tests and the throughput benchmark. With a labels
topic, events are sent without their label, and each label follows ``label_delay`` events
later as its own ``{"id", "label"}`` record, which is how delayed labels are simulated.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kafka import KafkaProducer
from tqdm import tqdm

from streamcl.connectors.files import FileSource
from streamcl.errors import DecodeError
from streamcl.events import EventDecoder

__all__ = ["load_events", "produce_events"]

log = logging.getLogger(__name__)

#: Producer options tuned for bulk loading (see KAFKA.md: about 20k msg/s on tansu).
#: bootstrap_timeout_ms: an unreachable broker fails the load after this, ms (one line in the CLI).
BULK = {
    "acks": "all",
    "linger_ms": 20,
    "batch_size": 262_144,
    "max_block_ms": 10_000,
    "request_timeout_ms": 10_000,
    "bootstrap_timeout_ms": 10_000,
}


def load_events(
    path: str,
    target: str | None = "class",
    id_column: str | None = None,
    id_prefix: str = "",
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Events of a file as JSON-able dicts ``{"id", "features", "label"[, "ts"]}``.

    Parameters
    ----------
    path
        CSV, CSV.gz, JSONL or JSONL.gz file, or ``builtin://elec2``.
    target
        CSV column holding the label (None: no labels).
    id_column
        CSV column holding the id (None: the row number).
    id_prefix
        Prepended to every id (makes ids unique across several loads).
    limit
        Stop after this many events.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    """
    source = FileSource(path)
    decoder = EventDecoder(
        max_payload_bytes=1 << 24, max_features=1 << 16, target=target, id_column=id_column
    )
    n = 0
    try:
        while limit is None or n < limit:
            records = source.read(4_096 if limit is None else min(4_096, limit - n))
            if not records:
                return
            for record in records:
                try:
                    if isinstance(record.value, bytes):
                        event = decoder.decode_json(record.value)
                    else:
                        event = decoder.decode_row(record.value, record.offset)
                except DecodeError as exc:
                    log.warning("skipping row %d of %s: %s", record.offset, path, exc)
                    continue
                out: dict[str, Any] = {
                    "id": f"{id_prefix}{event.id}",
                    "features": event.features,
                    "label": event.label,
                }
                if event.ts is not None:
                    out["ts"] = event.ts
                n += 1
                yield out
    finally:
        source.close()


def produce_events(
    events: Iterable[Mapping[str, Any]],
    topic: str,
    bootstrap_servers: str,
    labels_topic: str | None = None,
    label_delay: int = 0,
    rate: float | None = None,
    producer_config: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Send ``events`` to ``topic`` as JSON, keyed by id; optionally labels separately.

    Parameters
    ----------
    events
        Mappings with ``id``, ``features`` and optionally ``label`` and ``ts``.
    topic
        Events topic.
    bootstrap_servers
        ``host:port[,host:port]``.
    labels_topic
        When set, events go without label and each label goes here ``label_delay`` events
        after its event, as ``{"id", "label"}``.
    label_delay
        Events between an event and its label (0: right after it).
    rate
        Most events per second (None: as fast as possible).
    producer_config
        Extra kafka-python producer options (security); copied.
    progress
        Show a progress bar (events sent) on stderr.

    Returns
    -------
    dict[str, int]
        ``events`` and ``labels`` sent.

    Raises
    ------
    kafka.errors.KafkaError
        No broker reachable within ``max_block_ms`` (the producer's bootstrap), or a send
        that failed.
    """
    config = {**BULK, **dict(producer_config or {})}
    config["bootstrap_servers"] = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
    producer = KafkaProducer(**config)
    bar = tqdm(unit="ev", disable=not progress, mininterval=0.5)
    waiting: deque[tuple[str, Any]] = deque()
    sent = labels = 0
    started = time.monotonic()
    dumps = json.dumps
    try:
        for event in events:
            value = dict(event)
            event_id = str(value["id"])
            if labels_topic is not None:
                label = value.pop("label", None)
                if label is not None:
                    waiting.append((event_id, label))
            producer.send(topic, value=dumps(value).encode(), key=event_id.encode())
            sent += 1
            bar.update()
            while len(waiting) > label_delay:
                labels += _send_label(producer, labels_topic, *waiting.popleft())
            if rate is not None:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        while waiting:
            labels += _send_label(producer, labels_topic, *waiting.popleft())
        producer.flush()
    finally:
        bar.close()
        producer.close(timeout=5)
    return {"events": sent, "labels": labels}


def _send_label(producer: KafkaProducer, topic: str | None, event_id: str, label: Any) -> int:
    assert topic is not None
    value = json.dumps({"id": event_id, "label": label}).encode()
    producer.send(topic, value=value, key=event_id.encode())
    return 1
