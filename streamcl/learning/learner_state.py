"""The learner's checkpoint state: plain nested data, no pickled objects.

:func:`state_dict` returns nested dicts/lists of ``torch.Tensor``, ``numpy.ndarray``
(numeric dtypes; the HNSW index, if any, as ``faiss.serialize_index`` uint8 bytes) and
JSON-able scalars (str, int, float, bool, None; dict keys are str); river detectors are
stored as plain data (:func:`streamcl.learning.drift.detector_state`).
:func:`load_state_dict` restores it into a learner built with the same settings;
predictions after a round trip are identical. Both are reached through the
:class:`~streamcl.learning.learner.Learner` methods of the same names
(:mod:`streamcl.stream.checkpoint` writes the result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["copy_tree", "load_state_dict", "state_dict"]


def state_dict(learner: Learner) -> dict[str, Any]:
    """Everything needed to continue learning; see the module docstring for the types.

    Tensors and arrays are copies: learning after the call does not change the result.
    """
    state: dict[str, Any] = copy_tree(
        {
            "format": 1,
            "classes": list(learner.classes),
            "version": learner.version,
            "events_learned": learner.events_learned,
            "events_seen": learner.events_seen,
            "featurizer": learner.featurizer.state_dict(),
            "trainer": learner.trainer.state_dict(),
            "knn": None if learner.knn is None else learner.knn.state_dict(),
            "recent": None if learner.recent is None else learner.recent.state_dict(),
            "prototypes": None if learner.prototypes is None else learner.prototypes.state_dict(),
            "temporal": None if learner.temporal is None else learner.temporal.state_dict(),
            "linear": None if learner.linear is None else learner.linear.state_dict(),
            "tree": None if learner.tree is None else learner.tree.state_dict(),
            "replay": learner.replay.state_dict(),
            "drift": learner.drift.state_dict(),
            "hedge": dict(learner.hedge),
            "calibration": None
            if learner.calibration is None
            else learner.calibration.state_dict(),
            "recovery": learner.recovery.state_dict(),
            "label_recent": np.array(learner.recent_labels, dtype=np.int64),
            "space": None if learner.stored_scale is None else list(learner.stored_scale),
        }
    )
    return state


def load_state_dict(learner: Learner, state: dict[str, Any]) -> None:
    """Restore :meth:`state_dict`'s output into this learner (same settings).

    Raises
    ------
    ValueError
        Unknown ``format``.
    """
    if state.get("format") != 1:
        raise ValueError(f"unknown learner state format {state.get('format')!r}")
    learner.reset()
    state = copy_tree(state)  # never share tensors with the caller (or another learner)
    learner.classes = list(state["classes"])
    learner.class_index = {c: i for i, c in enumerate(learner.classes)}
    learner.version = int(state["version"])
    learner.events_learned = int(state["events_learned"])
    learner.events_seen = int(state["events_seen"])
    learner.featurizer.load_state_dict(state["featurizer"])
    learner.trainer.load_state_dict(state["trainer"])
    if learner.knn is not None and state["knn"] is not None:
        learner.knn.load_state_dict(state["knn"])
    if learner.recent is not None and state.get("recent") is not None:
        learner.recent.load_state_dict(state["recent"])
    if learner.temporal is not None and state.get("temporal") is not None:
        learner.temporal.load_state_dict(state["temporal"])
    if learner.linear is not None and state.get("linear") is not None:
        learner.linear.load_state_dict(state["linear"])
    if learner.tree is not None and state.get("tree") is not None:
        learner.tree.load_state_dict(state["tree"])
    if learner.prototypes is not None and state["prototypes"] is not None:
        learner.prototypes.load_state_dict(state["prototypes"])
    learner.replay.load_state_dict(state["replay"])
    learner.drift.load_state_dict(state["drift"])
    learner.hedge.update({str(k): float(v) for k, v in state["hedge"].items()})
    if learner.calibration is not None and state.get("calibration") is not None:
        learner.calibration.load_state_dict(state["calibration"])
    learner.recovery.load_state_dict(state["recovery"])
    learner.recent_labels.extend(np.asarray(state["label_recent"], dtype=np.int64).tolist())
    space = state["space"]
    if space is not None:
        idx, mean, std = space
        learner.stored_scale = (
            np.asarray(idx, np.int64),
            np.asarray(mean, float),
            np.asarray(std, float),
        )


def copy_tree(obj: Any) -> Any:
    """Deep copy of nested dicts / lists / tuples, cloning tensors and numpy arrays."""
    if isinstance(obj, dict):
        return {k: copy_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_tree(v) for v in obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    return obj
