"""Settings: one frozen pydantic-settings model, from a YAML file plus environment.

Precedence (highest first): keyword arguments, ``STREAMCL_*`` environment variables
(nested with ``__``, e.g. ``STREAMCL_LEARNER__BATCH_SIZE=32``), the YAML file, defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streamcl.errors import SettingsError

__all__ = ["Settings", "load_settings"]

BUILTIN_ELEC2 = "builtin://elec2"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSettings(_Section):
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


class EventSettings(_Section):
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


class MemorySettings(_Section):
    """The learner's episodic memory: kNN memory, class prototypes, replay buffer.

    See :mod:`streamcl.learning.memory` for the algorithms and their references.
    """

    knn: bool = Field(True, description="Use the FAISS kNN memory as a predictor.")
    space: Literal["input", "embedding"] = Field(
        "input", description="Key space of the kNN memory: scaled inputs or the MLP's embedding."
    )
    capacity: int = Field(2_000, ge=1, le=1_000_000, description="Most entries in the kNN memory.")
    k: int = Field(10, ge=1, le=256, description="Neighbours in the kNN vote.")
    eviction: Literal["fifo", "reservoir", "class_balanced"] = Field(
        "fifo", description="kNN eviction: sliding window, reservoir sample, or per-class FIFO."
    )
    hnsw_threshold: int = Field(
        50_000, ge=1, description="Entries beyond which the exact index becomes HNSW."
    )
    recent: int = Field(
        100,
        ge=0,
        le=100_000,
        description="Short-term kNN memory of the latest N labelled events, a predictor of "
        "its own (0 = off).",
    )
    prototypes: bool = Field(
        False,
        description="Use nearest-class-mean prototypes as a predictor (off by default: the "
        "Hedge gives them no weight on the benchmark streams; see the README).",
    )
    prototype_decay: float = Field(
        0.99, ge=0, lt=1, description="Prototype running mean: weight of the past per update."
    )
    replay: int = Field(4, ge=0, le=4096, description="Replayed rows mixed into each step.")
    replay_capacity: int = Field(2_000, ge=1, le=1_000_000, description="Replay buffer size.")
    replay_balanced: bool = Field(False, description="Class-balanced reservoir replay.")
    snapshot_every: int = Field(
        1, ge=1, description="Steps between memory copies published to serving snapshots."
    )


class DriftSettings(_Section):
    """Task-free drift detection (river detectors) and what to do on a drift."""

    detector: Literal["adwin", "kswin", "page_hinkley", "none"] = Field(
        "adwin", description="Detector on the prequential 0/1 error (or |error|) stream."
    )
    delta: float = Field(
        0.002, gt=0, lt=1, description="ADWIN confidence (smaller = fewer alarms)."
    )
    clock: int = Field(
        1, ge=1, description="ADWIN: events between checks (river's default 32 delays alarms)."
    )
    input_detector: Literal["knn_distance", "none"] = Field(
        "knn_distance",
        description="Input drift: Page-Hinkley on the distance to the nearest memory entry.",
    )
    actions: tuple[Literal["lr_restart", "shrink_perturb", "trim_memory"], ...] = Field(
        ("lr_restart", "trim_memory"), description="Actions taken on a loss drift."
    )
    delayed_actions: tuple[Literal["lr_restart", "shrink_perturb", "trim_memory"], ...] = Field(
        (),
        description="Actions taken on a loss drift found on delayed labels (the label join): "
        "none by default, they cost 2.8 points on elec2 with labels 100 events late "
        "(benchmarks/delayed.py).",
    )
    input_actions: tuple[Literal["lr_restart", "shrink_perturb", "trim_memory"], ...] = Field(
        (), description="Actions taken on an input drift (logged and counted regardless)."
    )
    trim_replay: bool = Field(
        True, description="trim_memory also drops replay rows older than the drift."
    )
    lr_boost: float = Field(3.0, ge=1, description="LR multiplier right after a drift.")
    lr_restart_steps: int = Field(200, ge=1, description="Steps for the boost to decay (cosine).")
    log_size: int = Field(100, ge=1, description="Most recent drifts kept in the drift log.")


class LearnerSettings(_Section):
    """The online learner: network, optimiser, combination, memory and drift handling."""

    task: Literal["classification", "regression"] = "classification"
    hidden: tuple[int, ...] = Field((64, 64), description="Hidden layer widths.")
    batch_size: int = Field(64, ge=1, le=4096, description="Events per learning micro-batch.")
    warmup: int = Field(
        1024,
        ge=0,
        description="Events over which the learner's own steps grow from 1 event to "
        "batch_size (more, smaller steps at the start of a stream; 0 = off).",
    )
    lr: float = Field(0.2, gt=0, le=10.0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "upgd"] = Field(
        "sgd",
        description="sgd, adam, or upgd (utility-based perturbed GD, streamcl.learning.upgd).",
    )
    loss: Literal["squared", "absolute"] = Field(
        "squared", description="Regression loss (classification uses cross-entropy)."
    )
    label_lags: int = Field(
        0,
        ge=0,
        le=16,
        description="Most recent labels fed as inputs (off by default: the temporal expert "
        "uses the autocorrelation only where it pays; see benchmarks/suite.py).",
    )
    temporal: bool = Field(
        True,
        description="Temporal expert in the combination: the label predicted from the previous "
        "one (transition model; the previous value for regression).",
    )
    temporal_decay: float = Field(
        0.999, gt=0, le=1, description="Temporal expert: per-event decay of transition counts."
    )
    linear: bool = Field(
        True,
        description="Linear expert in the combination: online softmax regression on the "
        "standardised inputs (streamcl.learning.linear; classification only).",
    )
    linear_lr: float = Field(
        0.05, gt=0, le=10.0, description="Linear expert: SGD step size per event."
    )
    hedge_eta: float = Field(1.0, gt=0, description="Hedge learning rate of the combination.")
    hedge_delayed_scale: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Weight of a delayed label's loss in the Hedge cumulative losses, relative "
        "to a label that came with its event: a smaller learning rate for delayed feedback.",
    )
    hedge_delayed_decay: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Per-event decay of the Hedge cumulative losses on delayed labels (a "
        "longer memory than hedge_decay: delayed losses are older and noisier).",
    )
    hedge_decay: float = Field(
        0.95, gt=0, le=1, description="Per-event decay of the predictors' cumulative losses."
    )
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Serve an EMA of the weights (0 = serve the fast weights)."
    )
    seed: int = 0
    partitioning: Literal["none", "key"] = Field(
        "none",
        description="none: one global model; key: one model per model key, whose state moves "
        "with its Kafka partition (docs/scaling.md).",
    )
    key_field: str | None = Field(
        None, description="Feature holding the model key; None: the Kafka record key."
    )
    max_live_models: int = Field(
        10_000,
        ge=1,
        description="Most per-key models in memory; the least recently used "
        "is saved and evicted beyond it.",
    )
    template: Path | None = Field(
        None, description="Checkpoint file whose learner every new key starts from; None: fresh."
    )
    standby: bool = Field(
        False,
        description="partitioning none: learn only while holding the lock partition "
        "(kafka.lock_topic); otherwise wait as a hot standby.",
    )
    memory: MemorySettings = MemorySettings()
    drift: DriftSettings = DriftSettings()


class PlasticitySettings(_Section):
    """Methods that keep a forever-learning network plastic (see ``streamcl.learning.plasticity``).

    Defaults are the papers' defaults where the paper gives one; the references are in the
    docstrings of the method classes.
    """

    methods: tuple[Literal["cbp", "redo", "shrink_perturb", "l2_init", "spectral"], ...] = Field(
        ("redo",),
        description=(
            "Methods applied together; empty = none. Default ReDo: with the default SGD it kept"
            " later permuted-digits tasks learned as well as early ones (benchmarks/plasticity.py)"
            " at no measurable cost on elec2."
        ),
    )
    seed: int = Field(0, description="Seed of the methods' re-initialisation and noise.")
    health_every: int = Field(500, ge=1, description="Steps between plasticity health metrics.")
    dormant_tau: float = Field(0.0, ge=0, description="Health: a unit is dormant at score <= tau.")
    cbp_replacement_rate: float = Field(
        1e-4, ge=0, le=1, description="CBP: units per unit per step."
    )
    cbp_decay_rate: float = Field(
        0.99, ge=0, lt=1, description="CBP: utility running-average decay."
    )
    cbp_maturity_threshold: int = Field(
        100, ge=0, description="CBP: steps before a unit may be reset."
    )
    redo_tau: float = Field(0.1, ge=0, description="ReDo: tau-dormant threshold on the unit score.")
    redo_every: int = Field(1000, ge=1, description="ReDo: steps between dormant-unit resets.")
    sp_shrink: float = Field(0.4, gt=0, le=1, description="Shrink-perturb: weight multiplier.")
    sp_noise: float = Field(0.01, ge=0, description="Shrink-perturb: scale of a fresh init added.")
    sp_every: int = Field(0, ge=0, description="Shrink-perturb: steps between; 0 = on drift only.")
    l2_init_strength: float = Field(1e-3, ge=0, description="L2-init: penalty on |theta-theta0|^2.")
    spectral_strength: float = Field(1e-4, ge=0, description="Spectral: penalty strength.")
    spectral_k: int = Field(2, ge=1, description="Spectral: penalise (sigma_max**k - 1)**2.")
    upgd_weight_decay: float = Field(1e-3, ge=0, description="UPGD: weight decay.")
    upgd_beta_utility: float = Field(0.999, ge=0, lt=1, description="UPGD: utility average decay.")
    upgd_sigma: float = Field(1e-3, ge=0, description="UPGD: std of the perturbation noise.")


class MetricsSettings(_Section):
    """Prequential metrics."""

    window: int = Field(1_000, ge=10, description="Events in the sliding accuracy window.")
    history_points: int = Field(
        512,
        ge=16,
        le=100_000,
        description="Most points per series of GET /v1/history (the dashboard), and most "
        "drifts kept there; older points are thinned out. Memory: under 1 kB per point "
        "(about 0.3 kB measured on elec2) plus about 1 kB per drift.",
    )


class ServerSettings(_Section):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_token: SecretStr | None = Field(None, description="Bearer token for mutating endpoints.")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest request body, bytes.")
    max_instances: int = Field(1_000, gt=0, description="Most instances or events in one request.")
    memory_budget_bytes: int | None = Field(
        None, gt=0, description="RSS above which /readyz and POST /v1/events answer 503; bytes."
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Serve the mutating endpoints without api_token on a non-loopback bind "
        "(otherwise they answer 403 there, as said at start).",
    )
    impute_missing: bool = Field(
        False,
        description="Predict instances lacking learned features (imputed by their running "
        "mean, named in the response's `imputed`) instead of answering 422.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Most time to receive a request's headers, seconds."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Most time to receive a request's body, seconds."
    )
    keep_alive_s: float = Field(5.0, ge=1, description="Idle keep-alive timeout, seconds.")
    http: Literal["httptools", "h11"] = Field(
        "httptools",
        description="HTTP/1.1 parser: httptools (llhttp; about a third less CPU per request) "
        "or h11 (pure Python).",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop of the HTTP server: auto = uvloop when installed."
    )
    max_header_bytes: int = Field(
        16_384, ge=1_024, description="Largest request line plus headers, bytes."
    )
    model_name: str = Field(
        "streamcl",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Model name in the Open Inference Protocol (/v2/models/{name}).",
    )


class CheckpointSettings(_Section):
    """Where and how often learner state is checkpointed."""

    dir: Path | None = Field(None, description="Checkpoint folder; None disables checkpoints.")
    store: str | None = Field(
        None,
        description="Object store of per-partition checkpoints (learner.partitioning key): "
        "file:///path or s3://bucket/prefix (endpoint and credentials: models.s3_*); "
        "None: <dir>/partitions.",
    )
    every_events: int = Field(10_000, gt=0)
    every_seconds: float = Field(60.0, gt=0)
    keep: int = Field(3, ge=1)
    on_regressed_log: Literal["fail", "reset_to_earliest"] = Field(
        "fail",
        description="When the log ends before a checkpointed offset (a broker lost data): "
        "fail (refuse to consume, not ready) or reset_to_earliest (re-read what is there).",
    )
    signing_key: SecretStr | None = Field(
        None, description="Key for HMAC-SHA256 checkpoint checksums (plain SHA-256 when unset)."
    )


class KafkaSettings(_Section):
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
        "kafka-python",
        description="Client of the predictions and dead-letter producers; confluent-kafka "
        "(librdkafka) costs the loop ~1 us per record instead of ~20.",
    )
    producer_max_request_size: int = Field(
        1_048_576, gt=0, description="Largest produced request (dead letters are cut to fit)."
    )

    @property
    def topics(self) -> tuple[str, ...]:
        """The events topics (``topic`` split on commas)."""
        return tuple(t.strip() for t in self.topic.split(",") if t.strip())


class LabelSettings(_Section):
    """Delayed labels: the store of predicted events waiting for their label."""

    pending_max: int = Field(
        100_000, ge=1, description="Most events waiting; the oldest is dropped beyond it."
    )
    pending_ttl_s: float = Field(
        3_600.0, gt=0, description="Seconds an event (or an early label) waits for its match."
    )


class ModelSettings(_Section):
    """Published model versions: the store, how often, how many, announcements, the gate.

    With ``store`` unset (the embedded default) nothing is published: ``streamcl run``
    serves its own in-process snapshot. With a store, the learner writes a version every
    ``publish_every_events`` events or ``publish_every_seconds`` seconds (whichever first,
    between learning steps), and ``streamcl serve`` replicas load them.
    """

    store: str | None = Field(
        None,
        description="Model store: a folder path or file:///path (a shared volume), or "
        "s3://bucket/prefix; None: no publication (in-process serving only).",
    )
    name: str = Field(
        "streamcl", pattern=r"^[A-Za-z0-9._-]+$", description="Model name (store key)."
    )
    publish_every_events: int = Field(10_000, ge=1, description="Events between versions.")
    publish_every_seconds: float = Field(
        0.5,
        gt=0,
        description="Seconds between versions: the served version's age is about this plus "
        "the gate's scoring and the replicas' poll (at most 2 s at the 99th percentile on elec2).",
    )
    keep: int = Field(
        20, ge=2, description="Promoted versions kept in the store (the reach of a rollback)."
    )
    announcements_topic: str | None = Field(
        None,
        description="Compacted Kafka topic announcing promoted versions (kafka.* connection); "
        "None: replicas poll the store's pointer only.",
    )
    gate_window: int = Field(
        500,
        ge=0,
        description="Quality gate: labelled events on which the candidate and the served "
        "version are both scored before promotion; 0 = promote every version.",
    )
    gate_margin: float = Field(
        0.05,
        ge=0,
        description="A candidate whose accuracy is lower by more than this (classification), "
        "or whose MAE is higher by more than this fraction (regression), is held.",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph); None for AWS."
    )
    s3_region: str | None = Field(None, description="S3 region; None for boto3's default.")
    s3_access_key_id: str | None = Field(
        None, description="S3 access key; None: boto3's chain (AWS_ACCESS_KEY_ID, role)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")


class ServeSettings(_Section):
    """A serving replica (``streamcl serve``)."""

    max_staleness_s: float = Field(
        30.0,
        gt=0,
        description="Not ready once the served version was last confirmed (by the learner's "
        "pointer heartbeat, or a pin) longer ago than this, seconds.",
    )
    poll_interval_s: float = Field(
        0.2,
        gt=0,
        description="Seconds between reads of the store's pointer and pin (two small reads; "
        "with Kafka announcements a new version is also picked up as soon as announced).",
    )


class Settings(BaseSettings):
    """All of streamcl's settings. Frozen; build one with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMCL_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    source: SourceSettings = SourceSettings()
    events: EventSettings = EventSettings()
    learner: LearnerSettings = LearnerSettings()
    metrics: MetricsSettings = MetricsSettings()
    plasticity: PlasticitySettings = PlasticitySettings()
    server: ServerSettings = ServerSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    kafka: KafkaSettings = KafkaSettings()
    labels: LabelSettings = LabelSettings()
    models: ModelSettings = ModelSettings()
    serve: ServeSettings = ServeSettings()

    @model_validator(mode="after")
    def _scaling_needs_kafka(self) -> Settings:
        lr = self.learner
        if lr.partitioning == "key":
            if self.source.kind != "kafka":
                raise ValueError("learner.partitioning: key needs source.kind: kafka")
            if self.checkpoint.dir is None and self.checkpoint.store is None:
                raise ValueError("learner.partitioning: key needs checkpoint.store (or .dir)")
            if self.kafka.labels_topic is not None:
                raise ValueError("learner.partitioning: key does not join delayed labels yet")
            if lr.standby:
                raise ValueError("learner.standby is for partitioning: none")
        if lr.standby and (self.source.kind != "kafka" or self.kafka.group_id is None):
            raise ValueError("learner.standby needs source.kind: kafka and a kafka.group_id")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments (the YAML file's content) lose to the environment."""
        return (env_settings, init_settings, file_secret_settings)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from an optional YAML file, the environment and overrides.

    Parameters
    ----------
    path
        YAML file whose top-level keys are the sections (``source``, ``learner``, ...).
    **overrides
        Sections given directly (tests); merged over the file, still below the environment.

    Raises
    ------
    SettingsError
        The file is missing or not a mapping, or a field is invalid; the message names
        every bad field by its dotted path (``learner.batch_size``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SettingsError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {p} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"config file {p} must hold a mapping of sections")
        data = dict(loaded or {})
    for key, value in overrides.items():
        base = data.get(key)
        data[key] = (
            {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        )
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
