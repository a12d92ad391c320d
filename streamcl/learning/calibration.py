"""Sharpening under-confident experts online before they are mixed.

The Hedge weights (:mod:`streamcl.learning.combination`) pay each expert its Brier score,
which rewards sharp probabilities as well as correct ones. An expert that is right but
hesitant pays for it: early in a stream, the linear expert's SGD weights are still small,
so its probabilities stay near uniform while it is already the most accurate expert (river's
Hyperplane, LED, Waveform), and it gets little weight, and little say in the mixture, next to
a sharper MLP that is wrong more often. Temperature scaling (Guo, C. et al. 2017, On
calibration of modern neural networks, ICML; the one-parameter form of Platt, J. 1999) puts
the experts on one scale: each expert's probabilities ``p`` become ``softmax(s * log p)``
with one inverse temperature ``s`` per expert, learned online on the log loss of the
calibrated probabilities, test then train (an event's output uses the ``s`` learned from the
events before it).

Only sharpening (``s >= 1``): an over-confident expert is already charged by the Brier
score when it is wrong, so its weight falls without help, and softening one costs where a
confident expert is the right one (on the suite's tuning seeds, letting ``s`` fall below 1
kept the tuning result but cost elec2 0.0016 and Phishing 0.004; ``docs/benchmarks.md``).

The step: the gradient of ``-log softmax(s z)_y`` in ``u = log s``, for ``z = log p``, is
``s (E_q[z] - z_y)`` under the calibrated ``q``: positive when the expert is too sharp,
negative when it is right but hesitant. It is averaged over a batch's labelled events and
scaled by RMSprop (Tieleman, T. & Hinton, G. 2012, lecture 6.5; bias-corrected as in Adam,
Kingma & Ba 2015), so the step in ``log s`` is about ``lr`` whatever the gradient's size,
and ``s`` follows an expert whose sharpness changes as it learns. Classification only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from streamcl.learning.combination import MIXTURE
from streamcl.models.predictor import log_probabilities, tempered

if TYPE_CHECKING:
    from streamcl.learning.delayed import ExpertOutputs

__all__ = ["MAX_SCALE", "Calibration"]

#: Largest inverse temperature (the smallest is 1: the expert's own probabilities).
MAX_SCALE = 32.0
#: RMSprop's decay of the mean squared gradient, per batch.
_RMS_DECAY = 0.99


class Calibration:
    """One inverse temperature per expert, learned online (see the module docstring).

    Parameters
    ----------
    lr
        Step size in ``log s`` per micro-batch (RMSprop-normalised, so about the largest
        change of ``log s`` a batch makes).

    Attributes
    ----------
    scales : dict[str, float]
        Inverse temperature by expert name, in ``[1, MAX_SCALE]``; 1.0 (absent) until the
        expert has been scored.
    """

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr
        self.scales: dict[str, float] = {}
        self._squares: dict[str, tuple[float, int]] = {}  # RMSprop: (mean square, steps)
        self._last: tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None = None

    def apply(self, parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated ``{name: (batch, n_classes) float32}`` probabilities of ``parts``.

        ``parts``: ``{name: (batch, n_classes) float32}`` as the experts gave them; an
        expert whose scale is 1 is passed through as it is (the same array). The same
        numbers as :func:`~streamcl.models.predictor.calibrate` (what serving applies);
        the batch's logs and calibrated outputs are kept for :meth:`learn`.
        """
        names = list(parts)
        if not names:
            self._last = None
            return {}
        scales = np.array([self.scales.get(n, 1.0) for n in names], np.float32)
        logs = log_probabilities([parts[n] for n in names])
        q = tempered(logs, scales)
        self._last = (names, scales, logs, q)
        at_one = (scales == 1.0).tolist()
        return {
            n: parts[n] if one else q[i]
            for i, (n, one) in enumerate(zip(names, at_one, strict=True))
        }

    def learn(self, rows: list[int], y: np.ndarray) -> None:
        """One RMSprop step per expert on the labelled ``rows`` of the last :meth:`apply`.

        Parameters
        ----------
        rows
            Indices of the labelled events in that batch.
        y
            ``(len(rows),)`` int64 class indices; ``-1`` (a class not seen yet) is skipped.
        """
        if self._last is None or not rows:
            return
        names, scales, logs, q = self._last
        if np.minimum.reduce(y) < 0:
            known = y >= 0
            rows, y = np.asarray(rows)[known].tolist(), y[known]
            if not rows:
                return
        if len(rows) != logs.shape[1]:
            logs, q = logs[:, rows], q[:, rows]
        # d(-log q_y)/d(log s) = s (E_q[log p] - log p_y), averaged over the events
        gap = np.add.reduce(q * logs, 2) - logs[:, np.arange(len(y)), y]  # (experts, m)
        grads = (scales * np.add.reduce(gap, 1, dtype=np.float64) / len(y)).tolist()
        for name, scale, grad in zip(names, scales.tolist(), grads, strict=True):
            self._step(name, grad, self.lr, scale)

    def learn_delayed(
        self, outputs: Sequence[ExpertOutputs | None], y: np.ndarray, weight: float
    ) -> None:
        """One RMSprop step per expert from joined events' event-time outputs.

        For labels that arrive after their events (:mod:`~streamcl.learning.delayed`): the
        pending events kept each expert's *calibrated* output ``q``, and since
        ``log q = s log p - log Z``, the gradient in ``log s`` is ``E_q[log q] - log q_y``
        without the expert's own probabilities (``q`` clipped at 1e-30 before the log).

        Parameters
        ----------
        outputs
            One ``(names, (n_experts, n_classes) float32)`` per joined event, or None.
        y
            ``(n,)`` int64 class indices; a class not known at event time is skipped.
        weight
            The steps' size relative to :attr:`lr` (``learner.hedge_delayed_scale``).
        """
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for entry, target in zip(outputs, y.tolist(), strict=True):
            if entry is None or not 0 <= target < entry[1].shape[1]:
                continue
            names, q = entry
            logs = np.log(np.maximum(q, np.float32(1e-30)))
            gap = np.add.reduce(q * logs, 1) - logs[:, target]  # (experts,)
            for name, value in zip(names, gap.tolist(), strict=True):
                if name != MIXTURE:  # the mixture's own row has no temperature
                    sums[name] = sums.get(name, 0.0) + value
                    counts[name] = counts.get(name, 0) + 1
        for name, total in sums.items():
            self._step(name, total / counts[name], self.lr * weight, self.scales.get(name, 1.0))

    def _step(self, name: str, grad: float, lr: float, scale: float) -> None:
        """RMSprop step of expert ``name``'s ``log s`` with step size ``lr``.

        ``grad`` is the gradient in ``log s`` taken at ``s = scale``; a non-finite one (an
        expert's NaN output) is skipped, so it cannot poison the scale or its statistics.
        """
        if not math.isfinite(grad):
            return
        mean_square, steps = self._squares.get(name, (0.0, 0))
        mean_square = _RMS_DECAY * mean_square + (1.0 - _RMS_DECAY) * grad * grad
        steps += 1
        self._squares[name] = (mean_square, steps)
        unbiased = mean_square / (1.0 - _RMS_DECAY**steps)
        step = lr * grad / (math.sqrt(unbiased) + 1e-8)
        self.scales[name] = min(max(scale * math.exp(-step), 1.0), MAX_SCALE)

    def state_dict(self) -> dict[str, Any]:
        """Plain state for checkpoints: scales and RMSprop statistics by expert."""
        return {
            "scales": dict(self.scales),
            "squares": {n: [v, t] for n, (v, t) in self._squares.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.scales = {str(n): float(v) for n, v in state.get("scales", {}).items()}
        self._squares = {
            str(n): (float(v), int(t)) for n, (v, t) in state.get("squares", {}).items()
        }
