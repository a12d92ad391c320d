"""Labels and class indices: the learner's classes, discovered online.

A class label gets the next output index when it is first learned (:func:`register`), so
the network, the memories and the experts grow an output as a class appears. The first
class's type (int or str) is every class's (:func:`check_label`): ``1`` and ``"1"`` would
otherwise become two classes. Regression targets are plain numbers throughout. Every
function takes the :class:`~streamcl.learning.learner.Learner` whose ``classes`` (labels
in output order) and ``class_index`` (label -> index) it reads or extends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from streamcl.errors import DecodeError
from streamcl.events import Event, Label

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["check_label", "known", "known_targets", "register", "targets"]


def check_label(
    learner: Learner, label: Label | float | None, pending: dict[str, str] | None = None
) -> None:
    """Check that a class label has the type (int or str) of the classes learned.

    ``pending`` (keyed ``"label"``) holds the type of a label seen earlier in the same
    read, before any class is learned. Regression targets are numbers already (the
    decoder checks them).

    Raises
    ------
    DecodeError
        ``type_mismatch`` naming ``label``.
    """
    if label is None or learner.regression:
        return
    kind = "string" if isinstance(label, str) else "integer"
    classes = learner.classes
    if classes:
        expected = "string" if isinstance(classes[0], str) else "integer"
    else:
        expected = kind if pending is None else pending.setdefault("label", kind)
    if kind != expected:
        raise DecodeError("type_mismatch", "label", f"expected an {expected} label, got {label!r}")


def known(learner: Learner, events: Sequence[Event]) -> np.ndarray:
    """``(batch,)`` targets of ``events`` (class indices or values).

    float64 with NaN for no label or a class not seen yet; int64 (classification) when
    every event has a known class.
    """
    nan = math.nan
    if learner.regression:
        return np.array([nan if e.label is None else float(e.label) for e in events])  # type: ignore[arg-type]
    labels = map(attrgetter("label"), events)  # None is never a class: NaN as for a new one
    return np.array(list(map(learner.class_index.get, labels, repeat(nan))))


def known_targets(learner: Learner, known: np.ndarray, rows: list[int]) -> np.ndarray:
    """:func:`targets` of the labelled ``rows``, from :func:`known`'s ``known``."""
    y = known if len(rows) == len(known) else known[rows]  # all labelled: rows is 0 .. n - 1
    if learner.regression:
        return y
    return np.where(y == y, y, -1.0).astype(np.int64)  # NaN: a class not seen yet


def targets(learner: Learner, labels: Sequence[Label]) -> np.ndarray:
    """Class indices ``(n,)`` int64 (``-1`` for a class not seen yet), or float64 values."""
    if learner.regression:
        return np.array(labels, dtype=np.float64)
    index = learner.class_index
    return np.array([index.get(label, -1) for label in labels], dtype=np.int64)


def register(learner: Learner, labels: Sequence[Label]) -> np.ndarray:
    """Class indices ``(n,)`` float64 of ``labels``, a new class taking the next index."""
    index, classes = learner.class_index, learner.classes
    for label in labels:
        if label not in index:
            index[label] = len(classes)
            classes.append(label)
    return np.array([index[label] for label in labels], dtype=np.float64)
