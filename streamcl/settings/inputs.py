"""Settings of where events come from: the source, event limits, Kafka, delayed labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from streamcl.settings.section import Section

__all__ = ["BUILTIN_ELEC2", "EventSettings", "KafkaSettings", "LabelSettings", "SourceSettings"]


BUILTIN_ELEC2 = "builtin://elec2"


class SourceSettings(Section):
    """Where events come from.

    ``kind="file"`` replays a CSV, CSV.gz or JSONL file (``builtin://elec2`` is the packaged
    Electricity market stream); ``"kafka"`` consumes topics (see ``kafka``); ``"none"`` takes
    events only from ``POST /v1/events``.
    """

    kind: Literal["file", "kafka", "none"] = "file"
    path: str = BUILTIN_ELEC2
    target: str | None = Field("class", description="Column holding the label (CSV).")
    id_column: str | None = Field(
        None, description="Column holding the event id; row number if unset."
    )
    rate: float | None = Field(
        None, gt=0, description="Replay rate limit in events/s; None = as fast as possible."
    )
    loop: bool = Field(False, description="Restart the file from the top at its end.")
    read_batch: int = Field(
        512,
        ge=1,
        le=100_000,
        description="Most records read per loop step, learned in micro-batches of batch_size.",
    )


class EventSettings(Section):
    """Limits applied when decoding an event."""

    max_payload_bytes: int = Field(65_536, gt=0, description="Largest encoded event, bytes.")
    max_features: int = Field(1_024, gt=0, description="Most features in one event.")
    max_string_length: int = Field(
        256, gt=0, description="Longest string feature value or label, characters."
    )
    dedup_window: int = Field(
        100_000, ge=0, description="Recent event ids remembered to reject duplicates; 0 = off."
    )
    key_dedup_window: int = Field(
        1_000,
        ge=0,
        description="With learner.partitioning: key, recent event ids remembered per key (saved "
        "with the key's model, so the window moves with its partition); 0 = off.",
    )


class KafkaSettings(Section):
    """Kafka connection, topics and client tuning (used when ``source.kind`` is ``"kafka"``).

    Defaults are Kafka's own (e.g. a 45 s session timeout); tests against a local broker
    shorten them. Producers for the dead-letter and predictions topics share the connection
    and security settings.
    """

    bootstrap_servers: str = Field(
        "localhost:9092", min_length=1, description="Bootstrap servers, host:port[,host:port]."
    )
    topic: str = Field(
        "streamcl.events", min_length=1, description="Events topic; several comma-separated."
    )
    labels_topic: str | None = Field(
        None, description='Topic of delayed labels {"id", "label"}; None: labels come with events.'
    )
    dead_letter_topic: str | None = Field(
        None, description="Topic for records that fail decoding; None: log them only."
    )
    predictions_topic: str | None = Field(
        None, description="Topic receiving one prediction per event, keyed by event id."
    )
    group_id: str | None = Field(
        "streamcl", description="Consumer group; None assigns every partition to this process."
    )
    client_id: str = "streamcl"
    group_instance_id: str | None = Field(
        None,
        description="Static membership id (e.g. the pod name): a restart within the session "
        "timeout keeps its partitions instead of rebalancing the group.",
    )
    assignment: Literal["range", "cooperative_sticky"] = Field(
        "range",
        description="Partition assignment: range (eager: every rebalance revokes everything) "
        "or cooperative_sticky (KIP-429: only partitions that move are revoked).",
    )
    lock_topic: str | None = Field(
        None,
        description="Single-partition topic whose owner is the active learner "
        "(learner.standby); None: '<group_id>.lock'.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(None, description="CA certificate (PEM) to verify brokers.")
    ssl_certfile: str | None = Field(None, description="Client certificate (PEM), mutual TLS.")
    ssl_keyfile: str | None = Field(None, description="Client private key (PEM), mutual TLS.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group without committed offsets starts."
    )
    max_poll_records: int = Field(500, ge=1, le=100_000, description="Most records per poll.")
    fetch_max_wait_ms: int = Field(500, ge=0, description="Broker wait for fetch.min.bytes, ms.")
    session_timeout_ms: int = Field(45_000, ge=1, description="Group session timeout, ms.")
    heartbeat_interval_ms: int = Field(3_000, ge=1, description="Group heartbeat interval, ms.")
    max_poll_interval_ms: int = Field(300_000, ge=1, description="Most time between polls, ms.")
    request_timeout_ms: int = Field(30_000, ge=1, description="Client request timeout, ms.")
    metadata_max_age_ms: int = Field(
        300_000, ge=1, description="Metadata refresh interval (new partitions, topics), ms."
    )
    commit_interval_s: float = Field(
        5.0, ge=0, description="Seconds between progress commits of handled offsets; 0: never."
    )
    watchdog_s: float = Field(
        60.0, gt=0, description="Not ready after this long without a fetch or metadata, s."
    )
    producer_linger_ms: int = Field(5, ge=0, description="Producer batching delay, ms.")
    producer_client: Literal["kafka-python", "confluent-kafka"] = Field(
        "confluent-kafka",
        description="Client of the predictions and dead-letter producers: confluent-kafka "
        "(librdkafka) costs the loop ~1 us per record, kafka-python ~20.",
    )
    consumer_client: Literal["kafka-python", "confluent-kafka"] = Field(
        "confluent-kafka",
        description="Client of the events consumer: confluent-kafka (librdkafka) fetches on "
        "its own threads (~340k records/s read alone), kafka-python in the loop's (~20k).",
    )
    producer_max_request_size: int = Field(
        1_048_576, gt=0, description="Largest produced request (dead letters are cut to fit)."
    )

    @property
    def topics(self) -> tuple[str, ...]:
        """The events topics (``topic`` split on commas)."""
        return tuple(t.strip() for t in self.topic.split(",") if t.strip())


class LabelSettings(Section):
    """Delayed labels: the store of predicted events waiting for their label."""

    pending_max: int = Field(
        100_000, ge=1, description="Most events waiting; the oldest is dropped beyond it."
    )
    pending_ttl_s: float = Field(
        3_600.0, gt=0, description="Seconds an event (or an early label) waits for its match."
    )
