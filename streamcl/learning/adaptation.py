"""A drift's actions on the learner: restart Hedge and the learning rate, shrink, trim memories.

:func:`on_drift` is called by :class:`~streamcl.learning.learner.Learner` (and by
:func:`~streamcl.learning.delayed.learn_delayed`) for every drift its
:class:`~streamcl.learning.drift.DriftMonitor` reports. A loss drift (an increase of the
error) restarts the Hedge weights; then, as configured (``drift.actions``,
``drift.input_actions``, ``drift.delayed_actions``), the learning rate restarts warm, the
network is shrunk and perturbed (Ash & Adams 2020) and the kNN memories, the tree
expert's window and the replay buffer forget entries older than the change point (Prabhu
et al. 2023), the
maximum-likelihood split of the recent prequential accuracy -- unless the classes
themselves changed (a class-incremental stream keeps its memories).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from streamcl.learning.combination import classes_changed
from streamcl.learning.drift import DriftRecord
from streamcl.learning.plasticity import ShrinkPerturb

if TYPE_CHECKING:
    from streamcl.learning.learner import Learner

__all__ = ["memory_is_stale", "on_drift", "trim"]


def on_drift(
    learner: Learner, record: DriftRecord, scored: int, delayed: bool = False
) -> int | None:
    """Take the configured actions for a drift (see the module docstring).

    ``scored`` is the stream offset just after the last scored event. The change is
    placed at the maximum-likelihood split of the recent prequential accuracy (at most
    ADWIN's window, or 500 events, back). Returns that offset if the memories are to be
    trimmed to what came after it (:meth:`_trim`, once the batch is learned), else None.
    ``delayed``: found on delayed labels, the actions are ``drift.delayed_actions``.
    """
    d = learner.settings.drift
    actions = d.actions if record.detector == "loss" else d.input_actions
    if delayed:  # found on delayed labels (learn_delayed)
        actions = d.delayed_actions
    age = learner.recovery.change_age(record.window or 500)
    if record.detector == "loss":
        learner.recovery.on_drift(age)
        learner.trainer.on_drift()
        learner.hedge = dict.fromkeys(learner.hedge, 0.0)  # re-learn the combination
    if "lr_restart" in actions:
        learner.trainer.restart_lr()
    if "shrink_perturb" in actions and learner.trainer.model is not None:
        p = learner.plasticity
        with torch.no_grad():
            ShrinkPerturb(p.sp_shrink, p.sp_noise, 0, p.seed + learner.version).apply(
                learner.trainer.model
            )
    if "trim_memory" in actions and memory_is_stale(learner, age):
        return scored - age
    return None


def trim(learner: Learner, cut: int) -> None:
    """Forget memories older than stream offset ``cut``.

    Older entries are kept only to fill the kNN memories up to ``k``; the tree expert's
    window is trimmed too (refit on what is left, or asleep until it has enough rows:
    :meth:`~.tree.WindowTree.forget_before`), and the replay buffer if
    ``drift.trim_replay``.
    """
    for memory in (learner.knn, learner.recent):
        if memory is not None:
            memory.forget_before(cut, min_size=learner.settings.memory.k)
    if learner.tree is not None:
        learner.tree.forget_before(cut, len(learner.classes))
    if learner.settings.drift.trim_replay:
        learner.replay.forget_before(cut)


def memory_is_stale(learner: Learner, age: int) -> bool:
    """Whether old memories mislead after a drift.

    Not when the classes themselves changed (:func:`classes_changed`): class-incremental
    streams keep their memory. Regression always trims.
    """
    if learner.regression:
        return True
    changed = classes_changed(np.fromiter(learner.recent_labels, dtype=np.int64), age)
    return changed is None or not changed
