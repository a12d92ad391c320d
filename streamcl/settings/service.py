"""Settings of the service around the learner: server, metrics, checkpoints, versions, replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from streamcl.settings.section import Section

__all__ = [
    "CheckpointSettings",
    "MetricsSettings",
    "ModelSettings",
    "ServeSettings",
    "ServerSettings",
]


class MetricsSettings(Section):
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


class ServerSettings(Section):
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


class CheckpointSettings(Section):
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


class ModelSettings(Section):
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
    gate_pending: int = Field(
        5_000,
        ge=0,
        description="Quality gate with delayed labels (kafka.labels_topic): the latest "
        "unlabelled events kept (raw features) so that the candidate and the served version "
        "are scored on them when their labels join; older ones are not scored.",
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


class ServeSettings(Section):
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
