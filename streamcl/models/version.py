"""A model version: an immutable, checksummed artifact of everything a prediction needs.

One version is one :func:`~streamcl.models.format.pack` file (no pickle; SHA-256 checked
before anything is parsed) holding the :class:`~streamcl.models.predictor.Snapshot` (weights
or EMA weights, feature scaler state and column layout, classes, kNN memory arrays, class
prototypes, Hedge weights) and its metadata: version number, model name, creation time, the
settings fingerprint it was built under, the source offsets and the prequential summary at
publication. The learner writes it (:mod:`streamcl.stream.publish`); serving replicas load
it (:mod:`streamcl.serving.replica`) and refuse a corrupt, truncated or incompatible one.

References
----------
Carbone, P. et al. (2017). State management in Apache Flink. PVLDB 10(12). (Versioned model
    state broadcast to the operators that serve it.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamcl.errors import CheckpointError, ModelVersionError
from streamcl.events import Event
from streamcl.models.format import TUNABLE_LEARNER, drop_keys, fingerprint_diff, pack, unpack
from streamcl.models.predictor import Prediction, Snapshot
from streamcl.models.schema import FeatureSchema
from streamcl.models.view import FeatureView

__all__ = ["MODEL_FORMAT", "ModelVersion", "decode_version", "encode_version", "model_fingerprint"]

#: Bumped when the artifact's layout changes; part of the fingerprint.
MODEL_FORMAT = 1


def model_fingerprint(settings: Any) -> dict[str, Any]:
    """The settings a model version depends on, as plain data (compared on load).

    The learner section except :data:`~streamcl.models.format.TUNABLE_LEARNER` (a replica
    configured for another network, task or feature layout refuses the version) and the
    label column.
    """
    return {
        "format": MODEL_FORMAT,
        "learner": drop_keys(settings.learner.model_dump(mode="json"), TUNABLE_LEARNER),
        "target": settings.source.target,
    }


@dataclass(frozen=True)
class ModelVersion:
    """A loaded model version: metadata plus the snapshot that predicts.

    Attributes
    ----------
    version : int
        Version number, from 1, increasing by publication.
    model : str
        Model name (``models.name``).
    created : float
        Unix time of publication, seconds.
    snapshot : Snapshot
        The immutable predictor.
    fingerprint : dict
        :func:`model_fingerprint` of the learner's settings.
    offsets : Any
        The source position at publication (file row or Kafka offsets per partition).
    metrics : dict
        Prequential summary at publication (accuracy or MAE, events seen).
    sha256 : str
        Hex SHA-256 of the artifact's bytes.
    """

    version: int
    model: str
    created: float
    snapshot: Snapshot
    fingerprint: dict[str, Any] = field(default_factory=dict)
    offsets: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    @property
    def schema(self) -> FeatureSchema:
        """The feature kinds the version learned, which inputs are checked against."""
        return self.snapshot.schema

    def predict(self, events: Sequence[Event]) -> list[Prediction]:
        """Predict ``events`` with the snapshot; thread-safe, no side effects."""
        return self.snapshot.predict(events)


def _view_state(view: FeatureView) -> dict[str, Any]:
    return {
        "columns": dict(view.columns),
        "numeric": view.numeric,
        "means": view.means,
        "stds": view.stds,
        "label_lags": view.label_lags,
        "regression": view.regression,
        "lag_columns": dict(view.lag_columns),
        "recent_labels": tuple(view.recent_labels),
        "target_mean": view.target_mean,
        "target_std": view.target_std,
        "schema": dict(view.schema.kinds),
    }


def _snapshot_state(s: Snapshot) -> dict[str, Any]:
    return {
        "features": _view_state(s.features),
        "params": s.params,
        "classes": tuple(s.classes),
        "steps": s.version,
        "task": s.task,
        "weights": dict(s.weights),
        "memory_keys": s.memory_keys,
        "memory_targets": s.memory_targets,
        "k": s.k,
        "prototypes": s.prototypes,
        "target_scale": s.target_scale,
        "space": s.space,
        "recent": s.recent,
        "temporal": s.temporal,
        "linear": s.linear,
        "tree": None if s.tree is None else {"arrays": list(s.tree[0]), "depth": s.tree[1]},
        "calibration": dict(s.calibration),
    }


def encode_version(
    snapshot: Snapshot,
    version: int,
    model: str,
    created: float,
    fingerprint: Mapping[str, Any],
    offsets: Any = None,
    metrics: Mapping[str, Any] | None = None,
) -> tuple[bytes, str]:
    """The artifact of ``snapshot`` as version ``version``, and its hex SHA-256.

    Raises
    ------
    CheckpointError
        The snapshot holds a value that cannot be stored without pickle.
    """
    state = {
        "kind": "streamcl-model",
        "version": version,
        "model": model,
        "created": created,
        "fingerprint": dict(fingerprint),
        "offsets": offsets,
        "metrics": dict(metrics or {}),
        "snapshot": _snapshot_state(snapshot),
    }
    data = pack(state)
    return data, hashlib.sha256(data).hexdigest()


def _snapshot(state: Mapping[str, Any]) -> Snapshot:
    f = state["features"]
    view = FeatureView(
        {str(k): int(v) for k, v in f["columns"].items()},
        f["numeric"],
        f["means"],
        f["stds"],
        int(f["label_lags"]),
        bool(f["regression"]),
        dict(f["lag_columns"]),
        tuple(f["recent_labels"]),
        float(f["target_mean"]),
        float(f["target_std"]),
        FeatureSchema.from_kinds(f.get("schema", {})),
    )
    return Snapshot(
        features=view,
        params=tuple((w, b) for w, b in state["params"]),
        classes=tuple(state["classes"]),
        version=int(state["steps"]),
        task=str(state["task"]),
        weights={str(k): float(v) for k, v in state["weights"].items()},
        memory_keys=state["memory_keys"],
        memory_targets=state["memory_targets"],
        k=int(state["k"]),
        prototypes=state["prototypes"],
        target_scale=tuple(state["target_scale"]),  # type: ignore[arg-type]
        space=str(state["space"]),
        recent=state["recent"],
        temporal=state.get("temporal"),
        linear=None if state.get("linear") is None else tuple(state["linear"]),  # type: ignore[arg-type]
        tree=_tree(state.get("tree")),
        calibration={str(k): float(v) for k, v in state.get("calibration", {}).items()},
    )


def _tree(state: Mapping[str, Any] | None) -> tuple[tuple[np.ndarray, ...], int] | None:
    """The tree expert's ``(arrays, depth)`` from an artifact, or None."""
    if state is None:
        return None
    return tuple(np.asarray(a) for a in state["arrays"]), int(state["depth"])


def decode_version(
    data: bytes,
    fingerprint: Mapping[str, Any] | None = None,
    sha256: str | None = None,
) -> ModelVersion:
    """Verify and load an artifact written by :func:`encode_version`.

    Parameters
    ----------
    data
        The artifact's bytes.
    fingerprint
        :func:`model_fingerprint` of the loader's settings; None skips the check.
    sha256
        Expected hex SHA-256 (from the pointer or the announcement); None skips it.

    Raises
    ------
    ModelVersionError
        ``checksum`` (flipped byte, truncated, tampered, or not the announced sha256),
        ``undecodable`` (not a model version), or ``incompatible`` (another fingerprint;
        the detail names each differing setting).
    """
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ModelVersionError("checksum", f"sha256 {digest} is not the announced {sha256}")
    try:
        state = unpack(data)
    except CheckpointError as exc:
        reason = "checksum" if "checksum" in str(exc) or "magic" in str(exc) else "undecodable"
        raise ModelVersionError(reason, str(exc)) from None
    if state.get("kind") != "streamcl-model":
        raise ModelVersionError("undecodable", "the file is not a streamcl model version")
    if fingerprint is not None:
        diff = fingerprint_diff(state.get("fingerprint") or {}, fingerprint)
        if diff:
            raise ModelVersionError("incompatible", "; ".join(diff))
    try:
        snapshot = _snapshot(state["snapshot"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelVersionError("undecodable", f"snapshot does not decode: {exc!r}") from None
    return ModelVersion(
        version=int(state["version"]),
        model=str(state["model"]),
        created=float(state["created"]),
        snapshot=snapshot,
        fingerprint=dict(state.get("fingerprint") or {}),
        offsets=state.get("offsets"),
        metrics=dict(state.get("metrics") or {}),
        sha256=digest,
    )
