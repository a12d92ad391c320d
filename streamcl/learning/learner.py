"""The online continual learner: features -> MLP + kNN memory + prototypes, combined by Hedge.

Per micro-batch (:meth:`Learner.predict_learn`, test-then-train):

1. featurize (label lags see only labels of earlier events, :mod:`streamcl.learning.features`);
2. predict with every predictor -- the MLP, the long-term kNN memory, a short-term kNN
   memory of the latest events (Losing et al. 2016's self-adjusting memory), the class
   prototypes, the temporal expert (:mod:`~streamcl.learning.temporal`), the linear and
   tree experts (:mod:`~streamcl.learning.linear`, :mod:`~streamcl.learning.tree`), each on
   or off by setting -- sharpen the under-confident ones (temperature scaling,
   :mod:`~streamcl.learning.calibration`) and combine them with Hedge weights; the
   weights and the kNN votes use the labels of the batch's earlier events, known before
   each event is predicted (:mod:`streamcl.learning.combination`,
   :func:`streamcl.learning.neighbours.batch_neighbours`); stored rows follow the running scaler
   (:mod:`streamcl.learning.standardise`);
3. score each predictor's own loss on the labelled events, update the Hedge weights and
   the experts' temperatures, and feed the combined error to the drift detectors
   (:mod:`streamcl.learning.drift`);
4. learn: one optimiser step on the labelled rows mixed with rows replayed from a reservoir
   (Chaudhry et al. 2019), plasticity methods (:mod:`streamcl.learning.plasticity`), then insert the
   rows into the kNN memory, the prototypes and the replay buffer (:mod:`streamcl.learning.memory`);
5. on a loss drift (an increase of the error): the micro-batch ends at the event that
   triggered it (the events after it are predicted anew, by the adapted learner), the
   Hedge weights start afresh and, as configured, the learning rate restarts warm, the
   network is shrunk and perturbed, and the kNN memories, the tree expert's window and the
   replay buffer forget entries older than the change point, the maximum-likelihood split
   of the recent prequential accuracy (Prabhu et al. 2023 for trimming;
   :func:`streamcl.learning.drift.bernoulli_split`) --
   unless the classes themselves changed (new or returning classes: a class-incremental
   stream keeps them).

Labels that arrive after their events (the join in :mod:`streamcl.stream.labels`) go through
:meth:`Learner.learn_delayed`: the event-time predictions are scored for the loss drift
detector and the recovery metrics, each expert's event-time output (kept with the pending
event, :meth:`Learner.expert_outputs`) updates the Hedge weights
(:mod:`streamcl.learning.delayed`), then the rows are learned; a loss drift found there takes
``drift.delayed_actions``. Events without a label still feed the input drift detector when
they are predicted.

Default hyper-parameters (``LearnerSettings``) are the ones ``benchmarks/prequential.py``
measures: one setting for elec2 and river's synthetic drift streams alike, no per-dataset
tuning.

A step whose loss or gradient norm is non-finite is skipped (no weight changes) and counted
in :attr:`Learner.skipped_steps`; gradients are clipped to norm 10 so finite gradients can
never blow the weights up.

Concurrency contract: one thread (the stream loop) owns a :class:`Learner` and is the only
writer; serving uses :meth:`Learner.snapshot` (see :mod:`~streamcl.learning.snapshot`: how it stays
consistent and lock-free).

Checkpoint API (for :mod:`streamcl.stream.checkpoint`): :meth:`Learner.state_dict` and
:meth:`Learner.load_state_dict` (:mod:`~streamcl.learning.learner_state`: plain nested data,
no pickled objects; predictions after a round trip are identical).

Where the rest lives: the experts' outputs (step 2) in :mod:`~streamcl.learning.predictors`,
the scoring, Hedge update and drift detection (step 3) in :mod:`~streamcl.learning.scoring`,
the learning step (4) in :mod:`~streamcl.learning.step`, a drift's actions in
:mod:`~streamcl.learning.adaptation`, the delayed-label path in
:mod:`~streamcl.learning.delayed`, the snapshot, summary and metrics in
:mod:`~streamcl.learning.report`, labels and class indices in :mod:`~streamcl.learning.classes`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from streamcl.events import Event, Label
from streamcl.learning import classes, learner_state, predictors, report, scoring, step
from streamcl.learning.adaptation import on_drift, trim
from streamcl.learning.calibration import Calibration
from streamcl.learning.combination import (
    MIXTURE,
    hedge_weights,
    predictor_losses,
    sequential_mixture,
)
from streamcl.learning.delayed import ExpertOutputs, StepOutputs, event_outputs, learn_delayed
from streamcl.learning.drift import DriftMonitor
from streamcl.learning.features import Featurizer
from streamcl.learning.linear import SoftmaxRegression
from streamcl.learning.memory import KNNMemory, Prototypes, ReplayBuffer
from streamcl.learning.network import MLP
from streamcl.learning.recovery import Recovery
from streamcl.learning.snapshot import Prediction, Snapshot, to_predictions
from streamcl.learning.standardise import restandardise
from streamcl.learning.temporal import LabelTransitions
from streamcl.learning.training import Trainer
from streamcl.learning.tree import WindowTree
from streamcl.settings import LearnerSettings, PlasticitySettings

__all__ = ["Learner", "Prediction", "Snapshot", "to_predictions"]


class Learner:
    """Prequential online continual learner (classification or regression).

    Classes are discovered online: a new label adds an output unit; a new feature or
    category adds an input column with zero weights.

    Parameters
    ----------
    settings
        :class:`~streamcl.settings.LearnerSettings`, including its ``memory`` and ``drift``
        sections.
    plasticity
        :class:`~streamcl.settings.PlasticitySettings` (methods, UPGD hyper-parameters);
        defaults when None.
    max_categories, max_columns
        Featurizer limits (see :class:`~streamcl.learning.features.Featurizer`).

    Attributes
    ----------
    classes : list
        Class labels in output order. ``version`` counts learning steps,
        ``events_learned`` labelled rows learned, ``skipped_steps`` non-finite steps skipped.
    recent_labels : deque[int]
        The last 1,000 labelled events' class indices (for the drift's memory trim).
    stored_scale : tuple | None
        The scaler state the stored rows are in (:func:`~.standardise.restandardise`).
    memory_copy, exported
        Caches of :mod:`~.report`: the kNN memory's last copied arrays ``(version, keys,
        targets)`` and the counts already exported to the metrics.
    """

    def __init__(
        self,
        settings: LearnerSettings,
        plasticity: PlasticitySettings | None = None,
        max_categories: int = 100,
        max_columns: int = 4_096,
    ) -> None:
        self.settings = settings
        self.plasticity = plasticity if plasticity is not None else PlasticitySettings()
        self.max_categories = max_categories
        self.max_columns = max_columns
        self._reset()

    def reset(self) -> None:
        """Forget everything learned (a fresh model, memory and detectors)."""
        self._reset()

    def _reset(self) -> None:
        s, m, d = self.settings, self.settings.memory, self.settings.drift
        self.regression = s.task == "regression"
        self.featurizer = Featurizer(
            self.max_categories, self.max_columns, s.label_lags, self.regression
        )
        self.classes: list[Label] = []
        self.class_index: dict[Label, int] = {}
        self.trainer = Trainer(s, self.plasticity)
        self.knn = (
            KNNMemory(m.capacity, m.k, m.eviction, m.hnsw_threshold, self.regression, s.seed)
            if m.knn
            else None
        )
        self.temporal = LabelTransitions(self.regression, s.temporal_decay) if s.temporal else None
        self.recent = (
            KNNMemory(m.recent, m.k, "fifo", m.hnsw_threshold, self.regression, s.seed)
            if m.knn and m.recent
            else None
        )
        self.prototypes = (
            Prototypes(m.prototype_decay) if m.prototypes and not self.regression else None
        )
        self.linear = SoftmaxRegression(s.linear_lr) if s.linear and not self.regression else None
        self.tree = (
            WindowTree(s.tree_window, s.tree_every, s.tree_depth, seed=s.seed)
            if s.tree and not self.regression
            else None
        )
        self.calibration = (
            Calibration(s.calibration_lr) if s.calibration_lr and not self.regression else None
        )
        self.replay = ReplayBuffer(m.replay_capacity, m.replay_balanced, s.seed)
        self.drift = DriftMonitor(
            d.detector, d.delta, d.input_detector if m.knn else "none", d.log_size, s.seed, d.clock
        )
        names = (
            ["mlp"]
            + (["knn"] if self.knn else [])
            + (["recent"] if self.recent else [])
            + (["prototypes"] if self.prototypes else [])
            + (["temporal"] if self.temporal else [])
            + (["linear"] if self.linear else [])
            + (["tree"] if self.tree else [])
        )
        self.hedge = dict.fromkeys(names, 0.0)
        self.recovery = Recovery(window=500)
        self.version = 0
        self.events_learned = 0
        self.events_seen = 0
        self.memory_copy: tuple[int, np.ndarray, np.ndarray] | None = None
        self.exported: dict[str, int] = {}
        self.recent_labels: deque[int] = deque(maxlen=1_000)  # class indices, for trimming
        self.stored_scale: tuple[np.ndarray, np.ndarray, np.ndarray] | None = (
            None  # stored rows' scale
        )
        self._outputs: list[StepOutputs] = []  # the last predict_learn's expert outputs

    # -- properties used by the loop, the API and other components ---------------------------
    @property
    def model(self) -> MLP | None:
        """The network (None before the first labelled event)."""
        return self.trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimiser of :attr:`model`."""
        return self.trainer.optimizer

    @property
    def skipped_steps(self) -> int:
        """Training steps skipped because the loss or the gradients were not finite."""
        return self.trainer.skipped_steps

    def weights(self) -> dict[str, float]:
        """Hedge weights of the predictors, summing to 1."""
        return hedge_weights(self.hedge, self.settings.hedge_eta)

    def check_label(
        self, label: Label | float | None, pending: dict[str, str] | None = None
    ) -> None:
        """Check a class label's type (int or str): :func:`~.classes.check_label`.

        Raises
        ------
        DecodeError
            ``type_mismatch`` naming ``label``.
        """
        classes.check_label(self, label, pending)

    # -- prediction ------------------------------------------------------------------------
    def _parts(
        self, x: np.ndarray, known: np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Each expert's output for ``x``, kNN distances: :func:`~.predictors.predict_parts`."""
        return predictors.predict_parts(self, x, known)

    def _keys(self, x: np.ndarray) -> np.ndarray:
        """KNN keys of ``x``: the inputs, or the last hidden layer's features."""
        if self.settings.memory.space == "input" or self.trainer.model is None:
            return x
        return self.trainer.embed(x)

    def _to_predictions(self, combined: np.ndarray | None, n: int) -> list[Prediction]:
        if combined is None:
            return [Prediction(None, {}) for _ in range(n)]
        if self.regression:
            return [Prediction(float(v), {}) for v in combined.tolist()]
        return to_predictions(combined, self.classes)

    def predict_learn(self, events: Sequence[Event]) -> list[Prediction]:
        """Predict ``events`` with the current state, then learn those that carry a label.

        Early in the stream (``warmup``) the batch is learned in smaller steps. A loss drift
        detected inside the micro-batch ends it at the detecting event: the drift's actions
        are taken, and the events after it are predicted anew by the
        adapted learner (as a learner updated per event would), each still exactly once.

        Parameters
        ----------
        events
            One micro-batch, in stream order; not mutated.

        Returns
        -------
        list[Prediction]
            One per event, each made before the event (or any later one) was learned.
        """
        predictions: list[Prediction] = []
        self._outputs = []
        while len(predictions) < len(events):
            rest = events[len(predictions) :]
            predictions += self._predict_learn(rest[: self._step_size(len(rest))])
        return predictions

    def _step_size(self, n: int) -> int:
        """Events learned in the next step: ``n``, or fewer early in the stream.

        Over the first ``warmup`` events the steps grow linearly from 1 event to
        ``batch_size``, so the network takes more (and smaller) steps while it knows least.
        """
        s = self.settings
        if self.events_seen >= s.warmup:
            return n
        return max(1, min(n, s.batch_size * self.events_seen // s.warmup))

    def _predict_learn(self, events: Sequence[Event]) -> list[Prediction]:
        """:meth:`predict_learn` up to and including the first loss drift's event."""
        x = self.featurizer.transform(events, learn=True)
        self._restandardise()
        known = classes.known(self, events)
        raw, nearest = self._parts(x, known)
        parts = raw if self.calibration is None else self.calibration.apply(raw)
        ready = bool(parts) and (self.regression or bool(self.classes))
        rows = [i for i, e in enumerate(events) if e.label is not None]
        labels: list[Label] = [events[i].label for i in rows]  # type: ignore[misc]
        y = classes.known_targets(self, known, rows)
        losses = self._losses(parts, rows, y) if ready and rows else {}
        combined = self._combine(parts, rows, losses, len(events)) if ready else None
        n, cut = len(events), None
        if rows and combined is not None:
            n, cut = scoring.score(self, combined, rows, y, losses, events, nearest)
            if n < len(events):  # a drift ended the batch early
                events, x, combined = events[:n], x[:n], combined[:n]
                labels = labels[: np.searchsorted(rows, n)]
                rows, y = rows[: len(labels)], y[: len(labels)]
        elif nearest is not None:  # no label (yet): the input detector still watches
            found = self.drift.update(np.zeros(0), [], self.events_seen, nearest)
            cuts = [on_drift(self, record, self.events_seen + n) for record in found]
            cut = max((c for c in cuts if c is not None), default=None)
        if self.calibration is not None and rows and ready:
            self.calibration.learn(rows, y)
        predictions = self._to_predictions(combined, n)
        kept = {} if combined is None else {**parts, MIXTURE: combined}  # combined: when ready
        self._outputs.append((kept, n))
        self.featurizer.learn(events)
        if rows:
            times = self.events_seen + np.asarray(rows, np.int64)
            labelled = x if len(rows) == len(x) else x[rows]  # every event labelled: no copy
            self.learn_matrix(labelled, labels, times, None if self.regression else y)
        if cut is not None:  # after the batch's own pre-change rows went in
            trim(self, cut)
        self.events_seen += n
        return predictions

    def expert_outputs(self, indices: Sequence[int]) -> list[ExpertOutputs | None]:
        """Each expert's output for events ``indices`` of the last :meth:`predict_learn`.

        What a pending event keeps for :meth:`learn_delayed` (:mod:`~.delayed`), the
        mixture's own output last (:data:`~.combination.MIXTURE`); None where the learner was
        not ready to predict.
        """
        return event_outputs(self._outputs, indices)

    def _restandardise(self) -> None:
        """Keep stored rows in the scale the batch was just encoded in (:func:`restandardise`).

        That scale includes the batch's features (:meth:`.Featurizer.batch_view`).
        """
        inputs = self.settings.memory.space == "input"
        memories = [m for m in (self.knn, self.recent) if m is not None and inputs]
        self.stored_scale = restandardise(
            self.stored_scale,
            self.featurizer.batch_view(),
            memories,
            self.replay,
            self.prototypes,
            self.tree,
        )

    def targets(self, labels: list[Label]) -> np.ndarray:
        """Class indices (``-1``: not seen yet) or values: :func:`~.classes.targets`."""
        return classes.targets(self, labels)

    def errors(self, predicted: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-event error and correctness (:func:`~.scoring.errors`)."""
        return scoring.errors(self, predicted, y)

    def _losses(
        self, parts: dict[str, np.ndarray], rows: list[int], y: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Each predictor's loss on the labelled rows, targets ``y`` (:meth:`_targets`)."""
        scale, kind = self.trainer.target_std(), self.settings.hedge_loss
        return predictor_losses(parts, rows, y, self.regression, scale, kind)

    def _combine(
        self, parts: dict[str, np.ndarray], rows: list[int], losses: dict[str, np.ndarray], n: int
    ) -> np.ndarray:
        """Hedge mixture, weights updated event by event (:func:`sequential_mixture`)."""
        s = self.settings
        return sequential_mixture(parts, rows, losses, self.hedge, s.hedge_decay, s.hedge_eta, n)

    # -- learning --------------------------------------------------------------------------
    def learn_matrix(
        self,
        x: np.ndarray,
        labels: Sequence[Label | float],
        times: np.ndarray | None = None,
        classes: np.ndarray | None = None,
    ) -> float:
        """One step on ``x`` and ``labels``, then memory inserts: :func:`~.step.learn_matrix`.

        Returns the batch's loss before the step (NaN if the step was skipped).
        """
        return step.learn_matrix(self, x, labels, times, classes)

    def learn_delayed(
        self,
        x: np.ndarray,
        labels: Sequence[Label],
        predicted: Sequence[Label | None],
        ids: Sequence[str],
        experts: Sequence[ExpertOutputs | None] | None = None,
    ) -> float:
        """Learn events whose labels arrived late: :func:`~.delayed.learn_delayed`."""
        return learn_delayed(self, x, labels, predicted, ids, experts)

    # -- serving and checkpoints (:mod:`~.report`, :mod:`~.learner_state`) -----------------
    def snapshot(self) -> Snapshot:
        """An immutable copy of the current state for serving: :func:`~.report.snapshot`."""
        return report.snapshot(self)

    def summary(self) -> dict[str, Any]:
        """Plain description for ``GET /v1/model``: :func:`~.report.summary`."""
        return report.summary(self)

    def export_metrics(self, metrics: Any, every: int = 16) -> None:
        """Set the learner's Prometheus metrics: :func:`~.report.export_metrics`."""
        report.export_metrics(self, metrics, every)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning: :func:`~.learner_state.state_dict`."""
        return learner_state.state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output: :func:`~.learner_state.load_state_dict`.

        Raises
        ------
        ValueError
            Unknown ``format``.
        """
        learner_state.load_state_dict(self, state)
