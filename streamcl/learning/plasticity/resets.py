"""Unit-reset methods: continual backprop (Dohare et al. 2024) and ReDo (Sokar et al. 2023)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from streamcl.learning.network import MLP
from streamcl.learning.plasticity.base import Seeded, next_layer, reinit_units
from streamcl.learning.plasticity.health import dormant_mask

__all__ = ["ContinualBackprop", "ReDo"]


class ContinualBackprop(Seeded):
    """Continual backpropagation (Dohare, S. et al. 2024, Nature 632, 768-774).

    Each hidden unit ``j`` of layer ``i`` keeps a running contribution utility
    ``u <- eta * u + (1 - eta) * mean_batch|h_j| * sum_k |w_out[k, j]|``, a running mean
    activation and an age. Each step, ``replacement_rate * (number of mature units)`` units
    (accumulated fractionally) with the lowest utility among units older than
    ``maturity_threshold`` get fresh incoming weights and zero outgoing weights; their mean
    contribution is moved into the next layer's bias, so the output barely changes (exactly,
    for a unit whose activation equals its running mean). Paper defaults:
    ``replacement_rate=1e-4``, ``decay_rate=0.99``, ``maturity_threshold=100``.
    """

    name = "cbp"

    def __init__(
        self,
        replacement_rate: float = 1e-4,
        decay_rate: float = 0.99,
        maturity_threshold: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.rate, self.decay, self.maturity = replacement_rate, decay_rate, maturity_threshold
        self.util: list[torch.Tensor] = []
        self.mean_act: list[torch.Tensor] = []
        self.age: list[torch.Tensor] = []
        self.accum: list[float] = []

    def _ensure(self, i: int, width: int) -> None:
        while len(self.util) <= i:
            self.util.append(torch.zeros(0))
            self.mean_act.append(torch.zeros(0))
            self.age.append(torch.zeros(0, dtype=torch.long))
            self.accum.append(0.0)
        if self.util[i].numel() != width:
            self.util[i], self.mean_act[i] = torch.zeros(width), torch.zeros(width)
            self.age[i], self.accum[i] = torch.zeros(width, dtype=torch.long), 0.0

    @torch.no_grad()
    def after_step(
        self,
        model: MLP,
        activations: list[torch.Tensor],
        step: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> int:
        """Update utilities and ages; replace the due lowest-utility mature units."""
        n_reset = 0
        for i, h in enumerate(activations):
            n_reset += self._layer_step(model, i, h.detach().float(), optimizer)
        return n_reset

    def _layer_step(
        self, model: MLP, i: int, h: torch.Tensor, optimizer: torch.optim.Optimizer | None
    ) -> int:
        nxt = next_layer(model, i)
        self._ensure(i, h.shape[1])
        self.age[i] += 1
        contribution = h.abs().mean(0) * nxt.weight.detach().abs().sum(0)
        self.util[i].mul_(self.decay).add_(contribution, alpha=1 - self.decay)
        self.mean_act[i].mul_(self.decay).add_(h.mean(0), alpha=1 - self.decay)
        eligible = torch.nonzero(self.age[i] > self.maturity).flatten()
        self.accum[i] += self.rate * len(eligible)
        k = min(int(self.accum[i]), len(eligible))
        if k == 0:
            return 0
        self.accum[i] -= k
        idx = eligible[torch.argsort(self.util[i][eligible])[:k]]
        corr = 1.0 - self.decay ** self.age[i][idx].float()
        nxt.bias.add_((nxt.weight[:, idx] * (self.mean_act[i][idx] / corr)).sum(1))
        reinit_units(model, i, idx, self.gen, optimizer)
        self.util[i][idx], self.mean_act[i][idx], self.age[i][idx] = 0.0, 0.0, 0
        return k

    def state_dict(self) -> dict[str, Any]:
        """Per-layer utility, mean activation, age tensors, accumulators and RNG state."""
        return {
            **super().state_dict(),
            "util": list(self.util),
            "mean_act": list(self.mean_act),
            "age": list(self.age),
            "accum": list(self.accum),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(d)
        self.util = [t.clone() for t in d["util"]]
        self.mean_act = [t.clone() for t in d["mean_act"]]
        self.age = [t.clone() for t in d["age"]]
        self.accum = [float(a) for a in d["accum"]]


class ReDo(Seeded):
    """ReDo, recycling dormant neurons.

    Sokar, E. et al. 2023, The dormant neuron phenomenon in deep reinforcement learning,
    ICML 2023.

    Mean absolute activations are accumulated over ``every`` steps; then every tau-dormant
    unit (:func:`dormant_mask`) gets fresh incoming weights and zero outgoing weights.
    Paper defaults: ``tau=0.1``, reset period ``every=1000`` steps.
    """

    name = "redo"

    def __init__(self, tau: float = 0.1, every: int = 1000, seed: int = 0) -> None:
        super().__init__(seed)
        self.tau, self.every = tau, every
        self.sum_abs: list[torch.Tensor] = []
        self.count = 0
        self._views: tuple[list[torch.Tensor], list[np.ndarray]] | None = None

    def _totals(self) -> list[np.ndarray]:
        """Views ``[(width_i,)]`` float32 of :attr:`sum_abs` (numpy), cached for that list."""
        if self._views is None or self._views[0] is not self.sum_abs:
            self._views = (self.sum_abs, [s.numpy() for s in self.sum_abs])
        return self._views[1]

    def after_step(
        self,
        model: MLP,
        activations: list[torch.Tensor],
        step: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> int:
        """Accumulate ``|h|``; every ``every`` steps re-initialise the tau-dormant units.

        The per-step batch means are taken with numpy on views of the activations (torch
        spends ~10 us of dispatch per small reduction; this runs every step). numpy sums in
        another order than torch, so the running sums may differ in the last float32 bit.
        """
        hs = [np.abs(h.detach().numpy()) for h in activations]
        totals = self._totals()  # share memory with the state tensors
        if [h.shape[1] for h in hs] != [len(t) for t in totals]:
            self.sum_abs, self.count = [torch.zeros(h.shape[1]) for h in hs], 0
            totals = self._totals()
        for total, h in zip(totals, hs, strict=True):
            total += np.add.reduce(h, 0) / len(h)  # the batch mean (ndarray.mean is slower)
        self.count += 1
        if step % self.every != 0:
            return 0
        return self._reset_dormant(model, optimizer)

    @torch.no_grad()
    def _reset_dormant(self, model: MLP, optimizer: torch.optim.Optimizer | None) -> int:
        """Re-initialise the tau-dormant units; start the next period's sums."""
        n_reset = 0
        for i, s in enumerate(self.sum_abs):
            idx = torch.nonzero(dormant_mask(s / self.count, self.tau)).flatten()
            if len(idx):
                reinit_units(model, i, idx, self.gen, optimizer)
                n_reset += len(idx)
            s.zero_()
        self.count = 0
        return n_reset

    def state_dict(self) -> dict[str, Any]:
        """Accumulated ``|h|`` per layer, its count and the RNG state."""
        return {**super().state_dict(), "sum_abs": list(self.sum_abs), "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(d)
        self.sum_abs = [t.clone() for t in d["sum_abs"]]
        self.count = int(d["count"])
