"""The online learner: featurizer + growable MLP, trained in prequential micro-batches.

Concurrency contract: one thread (the stream loop) owns a :class:`Learner` and is the only
writer. After each learning step it calls :meth:`Learner.snapshot`, which copies the
weights, the feature statistics and the class list into an immutable :class:`Snapshot`;
the loop publishes it by a single reference assignment. Serving threads predict only from
snapshots, so a prediction never observes half-updated weights, and never waits for a
learning step: it reads whichever snapshot was published last (at most one step old).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from streamcl.events import Event, Label
from streamcl.features import FeatureView, Featurizer
from streamcl.network import MLP
from streamcl.settings import LearnerSettings

__all__ = ["Learner", "Prediction", "Snapshot"]


@dataclass(frozen=True)
class Prediction:
    """One prediction: the label (None before any class is known) and class probabilities."""

    label: Label | None
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of what serving needs to predict.

    Attributes
    ----------
    features : FeatureView
        Frozen column map and scaler statistics.
    params : tuple[tuple[torch.Tensor, torch.Tensor], ...]
        ``(weight, bias)`` of each layer, hidden layers then head; detached copies.
    classes : tuple
        Class labels, in output-unit order.
    version : int
        Number of learning steps taken when the snapshot was made.
    """

    features: FeatureView
    params: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    classes: tuple[Label, ...]
    version: int

    def predict(self, events: Sequence[Event]) -> list[Prediction]:
        """Predict ``events`` (unknown features ignored); thread-safe, no side effects."""
        if not self.classes or not self.params:
            return [Prediction(None, {}) for _ in events]
        x = torch.from_numpy(self.features.transform(events))
        with torch.no_grad():
            for weight, bias in self.params[:-1]:
                x = torch.relu(torch.nn.functional.linear(_fit(x, weight), weight, bias))
            weight, bias = self.params[-1]
            probs = torch.softmax(torch.nn.functional.linear(_fit(x, weight), weight, bias), 1)
        return to_predictions(probs.numpy(), self.classes)


def _fit(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pad inputs with zero columns up to the layer's width (columns added after init)."""
    extra = weight.shape[1] - x.shape[1]
    return torch.nn.functional.pad(x, (0, extra)) if extra > 0 else x


def to_predictions(probs: np.ndarray, classes: Sequence[Label]) -> list[Prediction]:
    """Rows of ``probs`` ``(batch, n_classes)`` as :class:`Prediction` objects."""
    names = [str(c) for c in classes]
    best = probs.argmax(axis=1)
    return [
        Prediction(classes[int(b)], dict(zip(names, map(float, row), strict=True)))
        for b, row in zip(best, probs, strict=True)
    ]


class Learner:
    """Prequential online classifier: river scaler/one-hot features into a torch MLP.

    Classes are discovered online: a new label adds an output unit; a new feature or
    category adds an input column with zero weights. Each micro-batch is predicted with
    the weights from before it, then learned (test-then-train).

    Parameters
    ----------
    settings
        :class:`~streamcl.settings.LearnerSettings` (hidden widths, learning rate,
        optimizer, seed).
    """

    def __init__(self, settings: LearnerSettings) -> None:
        self.settings = settings
        self._reset()

    def _reset(self) -> None:
        self.featurizer = Featurizer()
        self.classes: list[Label] = []
        self.class_index: dict[Label, int] = {}
        self.model: MLP | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.version = 0
        self.events_learned = 0
        self.loss_fn = nn.CrossEntropyLoss()

    def predict_learn(self, events: Sequence[Event]) -> list[Prediction]:
        """Predict ``events`` with the current model, then learn those that carry a label.

        Returns
        -------
        list[Prediction]
            One per event, made before any of the batch was learned.
        """
        x = self.featurizer.transform(events, learn=True)
        predictions = self._predict_matrix(x)
        labelled = [i for i, e in enumerate(events) if e.label is not None]
        self.featurizer.learn(events)
        if labelled:
            self.learn_matrix(x[labelled], [events[i].label for i in labelled])
        return predictions

    def _predict_matrix(self, x: np.ndarray) -> list[Prediction]:
        if self.model is None or not self.classes:
            return [Prediction(None, {}) for _ in range(len(x))]
        self.model.grow_inputs(x.shape[1])
        with torch.no_grad():
            logits = self.model(torch.from_numpy(x))[:, : len(self.classes)]
            probs = torch.softmax(logits, dim=1).numpy()
        return to_predictions(probs, self.classes)

    def learn_matrix(self, x: np.ndarray, labels: Sequence[Label]) -> float:
        """One gradient step on features ``x`` ``(batch, n_columns)`` float32 and ``labels``.

        Returns
        -------
        float
            The batch's mean cross-entropy loss (nats) before the step.
        """
        for label in labels:
            if label not in self.class_index:
                self.class_index[label] = len(self.classes)
                self.classes.append(label)
        self._ensure_model(x.shape[1])
        assert self.model is not None and self.optimizer is not None
        y = torch.tensor([self.class_index[label] for label in labels], dtype=torch.long)
        self.model.train()
        logits = self.model(torch.from_numpy(x))
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.version += 1
        self.events_learned += len(labels)
        return float(loss.detach())

    def _ensure_model(self, n_inputs: int) -> None:
        n_outputs = max(len(self.classes), 1)
        if self.model is None:
            s = self.settings
            self.model = MLP(n_inputs, s.hidden, n_outputs, seed=s.seed)
            self.optimizer = self._make_optimizer()
            return
        before = [id(p) for p in self.model.parameters()]
        self.model.grow_inputs(n_inputs)
        self.model.grow_outputs(n_outputs)
        if [id(p) for p in self.model.parameters()] != before:
            self._rebuild_optimizer()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        assert self.model is not None
        params = list(self.model.parameters())
        if self.settings.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.settings.lr)
        return torch.optim.Adam(params, lr=self.settings.lr)

    def _rebuild_optimizer(self) -> None:
        """New optimizer over the grown parameters; keeps the state of unchanged ones."""
        old = self.optimizer
        self.optimizer = self._make_optimizer()
        if old is not None:
            for p, state in old.state.items():
                if any(p is q for q in self.optimizer.param_groups[0]["params"]):
                    self.optimizer.state[p] = state

    def snapshot(self) -> Snapshot:
        """An immutable copy of the current model for serving (see the module docstring)."""
        params: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
        if self.model is not None:
            layers = [*self.model.hidden_layers, self.model.head]
            params = tuple(
                (layer.weight.detach().clone(), layer.bias.detach().clone()) for layer in layers
            )
        return Snapshot(self.featurizer.view(), params, tuple(self.classes), self.version)

    def summary(self) -> dict[str, Any]:
        """Plain description for ``GET /v1/model``."""
        return {
            "classes": list(self.classes),
            "n_features": self.featurizer.n_columns,
            "version": self.version,
            "events_learned": self.events_learned,
        }
