"""The learner's outward views: the serving snapshot, the ``GET /v1/model`` summary, the metrics.

Functions of a :class:`~streamcl.learning.learner.Learner`, called through its methods
:meth:`~streamcl.learning.learner.Learner.snapshot`,
:meth:`~streamcl.learning.learner.Learner.summary` and
:meth:`~streamcl.learning.learner.Learner.export_metrics`, by the stream loop (the only
thread that owns the learner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamcl.learning.snapshot import Snapshot

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["export_metrics", "snapshot", "summary"]


def snapshot(learner: Learner) -> Snapshot:
    """An immutable copy of the current state for serving (:mod:`~.snapshot`).

    Every predictor but the temporal expert, whose Hedge weight is dropped (the others'
    weights renormalise when the snapshot combines them).
    """
    m = learner.settings.memory
    keys = targets = None
    if learner.knn is not None and learner.knn.size:
        if (
            learner.memory_copy is None
            or learner.version - learner.memory_copy[0] >= m.snapshot_every
        ):
            learner.memory_copy = (learner.version, *learner.knn.copy_arrays())
        _, keys, targets = learner.memory_copy
    recent = None
    if learner.recent is not None and learner.recent.size:
        recent = learner.recent.copy_arrays()
    protos = None
    if learner.prototypes is not None and len(learner.prototypes.counts):
        p = learner.prototypes
        protos = (p.means.copy(), p.counts.copy(), p.temperature)
    linear = learner.linear.copy_arrays() if learner.linear and learner.linear.ready else None
    tree = None
    if learner.tree is not None and learner.tree.arrays is not None:  # never mutated: shared
        tree = (learner.tree.arrays, learner.tree.depth)
    weights = learner.weights()
    if tree is None:
        weights.pop("tree", None)
    if linear is None:
        weights.pop("linear", None)
    # The temporal expert stays with the learner. In a snapshot it would predict every event
    # served until the next version from the one label seen last, stale by the events learned
    # since: on elec2, served by the snapshot of K events earlier, accuracy without it is
    # 0.852 / 0.773 / 0.778 / 0.742 / 0.640 against 0.853 / 0.749 / 0.764 / 0.703 / 0.616
    # with it, for K = 8 / 64 / 256 / 512 / 4,096 (K = 8 and 256: the first 20,000 events).
    weights.pop("temporal", None)
    if keys is None:
        weights.pop("knn", None)
    if recent is None:
        weights.pop("recent", None)
    return Snapshot(
        learner.featurizer.view(),
        learner.trainer.serving_params(),
        tuple(learner.classes),
        learner.version,
        learner.settings.task,
        weights,
        keys,
        targets,
        m.k,
        protos,
        (learner.trainer.target_mean(), learner.trainer.target_std()),
        m.space,
        recent,
        None,
        linear,
        tree,
        {} if learner.calibration is None else dict(learner.calibration.scales),
    )


def summary(learner: Learner) -> dict[str, Any]:
    """Plain description for ``GET /v1/model`` (and the metrics)."""
    last = learner.drift.log[-1] if learner.drift.log else None
    mem_bytes = (
        learner.replay.nbytes
        + (learner.knn.nbytes if learner.knn else 0)
        + (learner.recent.nbytes if learner.recent else 0)
        + (learner.prototypes.nbytes if learner.prototypes else 0)
        + (learner.linear.nbytes if learner.linear else 0)
        + (learner.tree.nbytes if learner.tree else 0)
    )
    return {
        "task": learner.settings.task,
        "classes": list(learner.classes),
        "n_features": learner.featurizer.n_columns,
        "version": learner.version,
        "events_learned": learner.events_learned,
        "skipped_steps": learner.skipped_steps,
        "predictor_weights": learner.weights(),
        "memory": {
            "entries": learner.knn.size if learner.knn else 0,
            "recent_entries": learner.recent.size if learner.recent else 0,
            "bytes": mem_bytes,
            "replay_entries": learner.replay.size,
        },
        "drift": {
            "counts": dict(learner.drift.counts),
            "last": None if last is None else last.__dict__,
            "log": [r.__dict__ for r in list(learner.drift.log)[-10:]],
        },
        **learner.recovery.summary(),
        "health": dict(learner.trainer.health),
    }


def export_metrics(learner: Learner, metrics: Any, every: int = 16) -> None:
    """Set the learner's Prometheus metrics (``streamcl.metrics.Metrics``).

    Cheap enough to call after every batch: it does the work every ``every`` steps and
    whenever a drift was detected since the last export.
    """
    total = sum(learner.drift.counts.values())
    if learner.version % every and total == learner.exported.get("drift_total", 0):
        return
    learner.exported["drift_total"] = total
    s = learner.summary()
    for name, count in learner.drift.counts.items():
        seen = learner.exported.get(f"drift_{name}", 0)
        if count > seen:
            metrics.drifts.labels(name).inc(count - seen)
            learner.exported[f"drift_{name}"] = count
    if learner.drift.log:
        metrics.last_drift.set(learner.drift.log[-1].time)
    skipped = learner.skipped_steps - learner.exported.get("skipped", 0)
    if skipped > 0:
        metrics.skipped_steps.inc(skipped)
        learner.exported["skipped"] = learner.skipped_steps
    metrics.memory_entries.set(s["memory"]["entries"])
    metrics.memory_bytes.set(s["memory"]["bytes"])
    for name, w in s["predictor_weights"].items():
        metrics.predictor_weight.labels(name).set(w)
    h = learner.trainer.health
    for key, value in h.items():
        if key.startswith("dormant_fraction_layer"):
            metrics.dormant_fraction.labels(key.removeprefix("dormant_fraction_")).set(value)
    if h:
        metrics.effective_rank.set(h.get("effective_rank", 0.0))
        metrics.weight_magnitude.set(h.get("weight_magnitude", 0.0))
        metrics.grad_norm.set(h.get("grad_norm", 0.0))
