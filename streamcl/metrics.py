"""Every Prometheus metric streamcl exports, declared once, units in the names.

Each :class:`Metrics` owns its own registry, so tests can build several services in one
process. Label sets are small and bounded (outcome, reason, layer, topic/partition, route).
Each registry also carries the process, platform and GC collectors (``process_*``,
``python_info``, ``python_gc_*``) and ``streamcl_build_info``.

Event counters add up: every event read or posted is counted once in
``streamcl_events_total`` by its exclusive outcome (``predicted``: decoded and predicted;
``rejected``: refused or dead-lettered), and separately, once learned, in
``streamcl_events_learned_total``.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "package_version"]

# The default registry's collectors are not used: each Metrics declares its own.
del GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR


def package_version(name: str = "streamcl") -> str:
    """The installed version of package ``name`` (``"unknown"`` when not installed)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's metrics on a private :class:`~prometheus_client.CollectorRegistry`.

    Parameters
    ----------
    registry
        Registry to declare on; a fresh one when None.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("streamcl_build", "Version of streamcl and its main libraries.", registry=r).info(
            {
                "version": package_version(),
                "python": platform.python_version(),
                "torch": package_version("torch"),
                "river": package_version("river"),
                "faiss": package_version("faiss-cpu"),
            }
        )
        # stream loop
        self.events = Counter(
            "streamcl_events",
            "Events received, by exclusive outcome: predicted or rejected (they sum).",
            ["outcome"],
            registry=r,
        )
        self.learned = Counter(
            "streamcl_events_learned", "Events learned (with their label).", registry=r
        )
        self.rejected = Counter(
            "streamcl_rejected_events", "Rejected events by reason.", ["reason"], registry=r
        )
        self.dead_letter = Counter(
            "streamcl_dead_letter",
            "Records sent to the dead-letter sink, by reason.",
            ["reason"],
            registry=r,
        )
        self.accuracy = Gauge(
            "streamcl_prequential_accuracy",
            "Prequential (test-then-train) accuracy over the sliding window, 0..1.",
            registry=r,
        )
        self.accuracy_total = Gauge(
            "streamcl_prequential_accuracy_cumulative",
            "Prequential accuracy since start, 0..1.",
            registry=r,
        )
        self.mae = Gauge(
            "streamcl_prequential_mae",
            "Prequential mean absolute error over the sliding window (regression), target units.",
            registry=r,
        )
        self.kappa_temporal = Gauge(
            "streamcl_prequential_kappa_temporal",
            "Kappa-temporal over the window (vs the no-change classifier).",
            registry=r,
        )
        self.predict_latency = Histogram(
            "streamcl_predict_latency_seconds",
            "Latency of POST /v1/predict, seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.learn_duration = Histogram(
            "streamcl_learn_batch_duration_seconds",
            "Time to predict, score and learn one micro-batch, seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_version = Gauge(
            "streamcl_model_version",
            "Version of the served model: learning steps (learner), version number (replica).",
            registry=r,
        )
        self.last_event = Gauge(
            "streamcl_last_event_timestamp_seconds",
            "When the last event was handled, epoch s.",
            registry=r,
        )
        self.skipped_steps = Counter(
            "streamcl_skipped_steps",
            "Training steps skipped: non-finite loss or gradients.",
            registry=r,
        )
        # drift and memory (continual learner)
        self.drifts = Counter(
            "streamcl_drifts", "Drifts detected, by detector.", ["detector"], registry=r
        )
        self.last_drift = Gauge(
            "streamcl_last_drift_timestamp_seconds",
            "When the last drift was detected, epoch s.",
            registry=r,
        )
        self.memory_entries = Gauge(
            "streamcl_memory_entries", "Entries in the kNN memory.", registry=r
        )
        self.memory_bytes = Gauge(
            "streamcl_memory_bytes", "Bytes held by the kNN memory and replay buffer.", registry=r
        )
        self.predictor_weight = Gauge(
            "streamcl_predictor_weight",
            "Share of each predictor (mlp, knn, recent, prototypes) in the Hedge combination.",
            ["predictor"],
            registry=r,
        )
        # plasticity health
        self.dormant_fraction = Gauge(
            "streamcl_dormant_fraction", "Fraction of dormant hidden units.", ["layer"], registry=r
        )
        self.effective_rank = Gauge(
            "streamcl_effective_rank", "Effective rank of the last hidden features.", registry=r
        )
        self.weight_magnitude = Gauge(
            "streamcl_weight_magnitude", "Mean absolute weight of the network.", registry=r
        )
        self.grad_norm = Gauge("streamcl_grad_norm", "L2 norm of the last gradient.", registry=r)
        # sources, labels, checkpoints
        self.consumer_lag = Gauge(
            "streamcl_consumer_lag",
            "Records behind the high-water mark.",
            ["topic", "partition"],
            registry=r,
        )
        self.pending_labels = Gauge(
            "streamcl_pending_labels", "Predicted events waiting for their label.", registry=r
        )
        self.records_consumed = Counter(
            "streamcl_records_consumed",
            "Records read from the source, by topic.",
            ["topic"],
            registry=r,
        )
        self.labels = Counter(
            "streamcl_labels",
            "Delayed labels: joined (event learned), expired (event dropped unmatched), "
            "unmatched (label dropped without its event).",
            ["outcome"],
            registry=r,
        )
        self.label_join_delay = Histogram(
            "streamcl_label_join_delay_seconds",
            "Time from an event's prediction to its label's arrival, seconds.",
            buckets=(0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0),
            registry=r,
        )
        self.produce_failures = Counter(
            "streamcl_produce_failures",
            "Records that could not be produced, by sink: dead_letter, predictions.",
            ["sink"],
            registry=r,
        )
        self.checkpoints = Counter("streamcl_checkpoints", "Checkpoints written.", registry=r)
        self.checkpoint_failures = Counter(
            "streamcl_checkpoint_failures", "Checkpoint writes that failed.", registry=r
        )
        self.checkpoint_duration = Histogram(
            "streamcl_checkpoint_duration_seconds",
            "Time to encode, write and fsync one checkpoint, seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.checkpoint_size = Gauge(
            "streamcl_checkpoint_size_bytes", "Size of the last checkpoint, bytes.", registry=r
        )
        self.log_regressions = Counter(
            "streamcl_log_regressions",
            "Times a partition's log ended before the checkpointed or current offset.",
            registry=r,
        )
        self.ready = Gauge("streamcl_ready", "1 when /readyz answers 200.", registry=r)
        # HTTP
        self.http_requests = Counter(
            "streamcl_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "streamcl_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template, seconds.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._model_versions(r)
        self._scaling(r)

    def _model_versions(self, r: CollectorRegistry) -> None:
        """Published model versions (learner) and their loading (serving replicas)."""
        self.versions_published = Counter(
            "streamcl_model_versions_published",
            "Model versions the learner wrote, by outcome: promoted, held, failed.",
            ["outcome"],
            registry=r,
        )
        self.versions_held = Counter(
            "streamcl_model_versions_held",
            "Candidate versions held back by the quality gate.",
            registry=r,
        )
        self.published_version = Gauge(
            "streamcl_model_published_version", "Newest promoted version number.", registry=r
        )
        self.model_loads = Counter(
            "streamcl_model_loads",
            "Version loads by a replica, by outcome: loaded, checksum, incompatible, "
            "undecodable, missing, store_error.",
            ["outcome"],
            registry=r,
        )
        self.model_age = Gauge(
            "streamcl_model_age_seconds",
            "Age of the served version (now - its creation), seconds.",
            registry=r,
        )
        self.model_staleness = Gauge(
            "streamcl_model_staleness_seconds",
            "Time since the served version was last confirmed current, seconds.",
            registry=r,
        )
        self.model_pinned = Gauge(
            "streamcl_model_pinned",
            "1 while a pinned (or rolled back) version is served.",
            registry=r,
        )

    def _scaling(self, r: CollectorRegistry) -> None:
        """Per-key models and hot standby: per instance, never per key (cardinality)."""
        self.keyed_live_models = Gauge(
            "streamcl_keyed_live_models", "Per-key models in memory on this instance.", registry=r
        )
        self.keyed_partitions = Gauge(
            "streamcl_keyed_partitions", "Partitions (with their models) owned.", registry=r
        )
        self.keyed_evictions = Counter(
            "streamcl_keyed_evictions", "Per-key models saved and evicted (LRU).", registry=r
        )
        self.keyed_loads = Counter(
            "streamcl_keyed_loads", "Per-key models loaded from the store.", registry=r
        )
        self.keyed_load_duration = Histogram(
            "streamcl_keyed_load_duration_seconds",
            "Time to read and restore one per-key model, seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.keyed_restore_duration = Histogram(
            "streamcl_keyed_restore_duration_seconds",
            "Time to read a partition's checkpoint manifest on assignment, seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.standby_active = Gauge(
            "streamcl_standby_active",
            "1 while this instance holds the learner lock (learner.standby), else 0.",
            registry=r,
        )
        self.takeovers = Counter(
            "streamcl_standby_takeovers", "Times this instance took the learner lock.", registry=r
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
