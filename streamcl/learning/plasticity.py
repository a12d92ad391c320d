"""Keeping a forever-learning network plastic: methods, and health metrics to watch.

A network trained on a non-stationary stream slowly loses the ability to learn: dormant
units pile up, weights grow, the effective rank of its features collapses (Dohare, S. et
al. 2024, Loss of plasticity in deep continual learning, Nature 632, 768-774).

How the learner uses this module, per micro-batch (``step`` counts optimiser steps from 1)::

    methods = build_methods(settings.plasticity, model)            # once, after the model
    opt = build_optimizer(settings.learner.optimizer, model.parameters(), settings.learner.lr,
                          **optimizer_kwargs(settings.learner.optimizer, settings.plasticity))
    logits, acts = model.forward_with_activations(x)
    loss = criterion(logits, y) + sum(t for m in methods if (t := m.loss_term(model)) is not None)
    opt.zero_grad(); loss.backward(); opt.step()
    n_reset = sum(m.after_step(model, acts, step, opt) for m in methods)
    if drift_detected: [m.on_drift(model) for m in methods]
    if step % settings.plasticity.health_every == 0: health(model, acts, tau)
    checkpoint["plasticity"] = methods_state_dict(methods)          # tensors + JSON only
    load_methods_state_dict(methods, checkpoint["plasticity"])

Methods look layers up from the model at every call, so they survive ``MLP.grow_*``; per-unit
state whose width no longer matches is reset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from streamcl.learning.network import MLP
from streamcl.learning.upgd import UPGD, build_optimizer, optimizer_kwargs
from streamcl.settings import PlasticitySettings

__all__ = [
    "UPGD",
    "ContinualBackprop",
    "L2Init",
    "PlasticityMethod",
    "ReDo",
    "ShrinkPerturb",
    "SpectralReg",
    "build_methods",
    "build_optimizer",
    "dormant_mask",
    "effective_rank",
    "health",
    "load_methods_state_dict",
    "methods_state_dict",
    "optimizer_kwargs",
]


def _next_layer(model: MLP, i: int) -> nn.Linear:
    """The layer that reads hidden layer ``i`` (``hidden_layers[i + 1]`` or ``head``)."""
    layer = model.hidden_layers[i + 1] if i + 1 < len(model.hidden_layers) else model.head
    return cast(nn.Linear, layer)


def _reinit_units(
    model: MLP,
    i: int,
    idx: torch.Tensor,
    gen: torch.Generator,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """Re-initialise units ``idx`` of hidden layer ``i`` and reset their optimiser state.

    Fresh incoming weights (PyTorch's uniform(+-1/sqrt(fan_in))), zero bias, zero outgoing
    weights. Optimiser state: first moments (``exp_avg``, UPGD's ``avg_utility``) to zero,
    Adam's ``exp_avg_sq`` to the tensor's mean (zero would make Adam's next step about
    ``lr / sqrt(1 - beta2)``, killing the unit: torch's Adam has no per-weight step count).
    """
    layer, nxt = cast(nn.Linear, model.hidden_layers[i]), _next_layer(model, i)
    bound = 1.0 / math.sqrt(layer.in_features)
    fresh = (torch.rand(len(idx), layer.in_features, generator=gen) * 2 - 1) * bound
    layer.weight[idx] = fresh.to(layer.weight.dtype)
    layer.bias[idx] = 0.0
    nxt.weight[:, idx] = 0.0
    if optimizer is None:
        return
    for p, dim in ((layer.weight, 0), (layer.bias, 0), (nxt.weight, 1)):
        state = optimizer.state.get(p, {})
        sq = state.get("exp_avg_sq")
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                value.index_fill_(dim, idx, float(value.mean()) if value is sq else 0.0)


def dormant_mask(activations: torch.Tensor, tau: float = 0.0) -> torch.Tensor:
    """``(width,)`` bool: which units are tau-dormant (Sokar et al. 2023).

    A unit is dormant when ``E|h_j| / mean_k E|h_k| <= tau``, for ``activations``
    ``(batch, width)`` float (or the ``(width,)`` batch means of ``|h|``). ``tau=0`` counts
    only units that are zero on every input (dead).
    """
    mean_abs = activations.abs().mean(0) if activations.dim() == 2 else activations.abs()
    score = mean_abs / (mean_abs.mean() + 1e-12)
    return score <= tau


class PlasticityMethod:
    """Base of the methods; every hook is a no-op unless a subclass overrides it.

    Attributes
    ----------
    name : str
        The method's name in ``PlasticitySettings.methods``.
    """

    name = "base"

    def loss_term(self, model: MLP) -> torch.Tensor | None:
        """A differentiable scalar to add to the loss before ``backward``, or None."""
        return None

    def after_step(
        self,
        model: MLP,
        activations: list[torch.Tensor],
        step: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> int:
        """Run after ``optimizer.step()``; return the number of units reset or perturbed.

        ``activations`` are the batch's post-ReLU hidden activations ``[(batch, width_i)]``
        from ``forward_with_activations``; ``step`` is the 1-based optimiser step count. If
        ``optimizer`` is given, the optimiser state of re-initialised weights is reset.
        """
        return 0

    def on_drift(self, model: MLP) -> None:
        """React to a drift signal from a drift detector."""

    def state_dict(self) -> dict[str, Any]:
        """State as tensors and JSON-able values only (no pickled objects)."""
        return {}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class _Seeded(PlasticityMethod):
    """A method with its own random generator, whose state is part of the method's state."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.gen.set_state(d["rng"])


class ContinualBackprop(_Seeded):
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
        nxt = _next_layer(model, i)
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
        _reinit_units(model, i, idx, self.gen, optimizer)
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


class ReDo(_Seeded):
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
                _reinit_units(model, i, idx, self.gen, optimizer)
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


class ShrinkPerturb(_Seeded):
    """Shrink and perturb.

    Ash, J. & Adams, R. P. 2020, On warm-starting neural network training, NeurIPS 2020:
    ``theta <- shrink * theta + noise * theta_fresh`` for every
    weight and bias, ``theta_fresh`` a fresh uniform(+-1/sqrt(fan_in)) initialisation.

    Applied every ``every`` steps (``0``: never on a schedule) and on every drift signal.
    Defaults follow the paper's recommended regime: ``shrink=0.4``, ``noise=0.01``.
    """

    name = "shrink_perturb"

    def __init__(
        self, shrink: float = 0.4, noise: float = 0.01, every: int = 0, seed: int = 0
    ) -> None:
        super().__init__(seed)
        self.shrink, self.noise, self.every = shrink, noise, every

    @torch.no_grad()
    def apply(self, model: MLP) -> int:
        """Shrink and perturb every layer now; returns the number of hidden units."""
        for layer in [*model.hidden_layers, model.head]:
            bound = 1.0 / math.sqrt(layer.in_features)
            for p in (layer.weight, layer.bias):
                fresh = (torch.rand(p.shape, generator=self.gen) * 2 - 1) * bound
                p.mul_(self.shrink).add_(fresh.to(p.dtype), alpha=self.noise)
        return sum(cast(nn.Linear, layer).out_features for layer in model.hidden_layers)

    def after_step(
        self,
        model: MLP,
        activations: list[torch.Tensor],
        step: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> int:
        """Shrink and perturb when ``step`` is a multiple of ``every`` (if ``every > 0``)."""
        return self.apply(model) if self.every > 0 and step % self.every == 0 else 0

    def on_drift(self, model: MLP) -> None:
        """Shrink and perturb now."""
        self.apply(model)


class L2Init(PlasticityMethod):
    """L2-init, regularisation towards the initial weights.

    Loss term ``strength * sum |theta - theta_0|^2`` (Kumar, S., Marklund, H. & Van Roy, B.
    2023, Maintaining plasticity in continual learning via regenerative regularization,
    arXiv:2308.11958). The paper sweeps the strength over
    ``1e-2 .. 1e-5``; default ``1e-3``. ``theta_0`` is the model at construction; weights
    added by growth are anchored at their value when first seen.
    """

    name = "l2_init"

    def __init__(self, model: MLP, strength: float = 1e-3) -> None:
        self.strength = strength
        self.anchors = {n: p.detach().clone() for n, p in model.named_parameters()}

    def _anchor(self, name: str, p: torch.Tensor) -> torch.Tensor:
        old = self.anchors.get(name)
        if old is None or old.shape != p.shape:
            new = p.detach().clone()
            if old is not None and old.dim() == p.dim():
                cut = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, p.shape, strict=True))
                new[cut] = old[cut]
            self.anchors[name] = new
        return self.anchors[name]

    def loss_term(self, model: MLP) -> torch.Tensor:
        """``strength * sum |theta - theta_0|^2``, a differentiable scalar."""
        terms = [((p - self._anchor(n, p)) ** 2).sum() for n, p in model.named_parameters()]
        return self.strength * torch.stack(terms).sum()

    def state_dict(self) -> dict[str, Any]:
        """The anchors ``{parameter name: tensor}``."""
        return {"anchors": dict(self.anchors)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.anchors = {n: t.clone() for n, t in d["anchors"].items()}


class SpectralReg(_Seeded):
    """Spectral regularisation of the top singular value of every weight matrix.

    Lewandowski, A. et al. 2024, Learning continually by spectral regularization, ICLR 2025,
    arXiv:2406.06811; loss term
    ``strength * (sum_W (sigma_max(W)**k - 1)**2 + sum_b |b|^2)`` over all layers, ``sigma_max``
    estimated by one power iteration per call with persistent vectors. Paper: ``k=2``; the
    strength is swept, default ``1e-4``.
    """

    name = "spectral"

    def __init__(self, strength: float = 1e-4, k: int = 2, seed: int = 0) -> None:
        super().__init__(seed)
        self.strength, self.k = strength, k
        self.vectors: dict[str, torch.Tensor] = {}

    def top_singular_value(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """Differentiable estimate of ``sigma_max(w)`` for ``w`` ``(out, in)``."""
        v = self.vectors.get(name)
        if v is None or v.numel() != w.shape[1]:
            v = torch.randn(w.shape[1], generator=self.gen)
        with torch.no_grad():
            u = nn.functional.normalize(w.detach() @ v.to(w.dtype), dim=0)
            v = nn.functional.normalize(w.detach().T @ u, dim=0)
        self.vectors[name] = v.float()
        return u @ w @ v

    def loss_term(self, model: MLP) -> torch.Tensor:
        """The spectral penalty, a differentiable scalar."""
        terms = []
        for name, p in model.named_parameters():
            if p.dim() == 2:
                terms.append((self.top_singular_value(name, p) ** self.k - 1.0) ** 2)
            else:
                terms.append((p**2).sum())
        return self.strength * torch.stack(terms).sum()

    def state_dict(self) -> dict[str, Any]:
        """Power-iteration vectors ``{parameter name: (in,) tensor}`` and the RNG state."""
        return {**super().state_dict(), "vectors": dict(self.vectors)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(d)
        self.vectors = {n: t.clone() for n, t in d["vectors"].items()}


def build_methods(settings: PlasticitySettings, model: MLP) -> list[PlasticityMethod]:
    """The methods named in ``settings.methods``, in that order, for ``model``.

    Build after the model is initialised (L2-init anchors at the current weights).
    """
    s = settings
    factories: dict[str, Callable[[], PlasticityMethod]] = {
        "cbp": lambda: ContinualBackprop(
            s.cbp_replacement_rate, s.cbp_decay_rate, s.cbp_maturity_threshold, s.seed
        ),
        "redo": lambda: ReDo(s.redo_tau, s.redo_every, s.seed),
        "shrink_perturb": lambda: ShrinkPerturb(s.sp_shrink, s.sp_noise, s.sp_every, s.seed),
        "l2_init": lambda: L2Init(model, s.l2_init_strength),
        "spectral": lambda: SpectralReg(s.spectral_strength, s.spectral_k, s.seed),
    }
    return [factories[name]() for name in s.methods]


def methods_state_dict(methods: list[PlasticityMethod]) -> dict[str, dict[str, Any]]:
    """``{method name: state}`` of all methods; tensors and JSON-able values only."""
    return {m.name: m.state_dict() for m in methods}


def load_methods_state_dict(methods: list[PlasticityMethod], d: dict[str, dict[str, Any]]) -> None:
    """Restore :func:`methods_state_dict`; methods missing from ``d`` keep their state."""
    for m in methods:
        if m.name in d:
            m.load_state_dict(d[m.name])


@torch.no_grad()
def health(model: MLP, activations: list[torch.Tensor], tau: float = 0.0) -> dict[str, float]:
    """Plasticity health of ``model`` on one batch (cost: one small SVD).

    Parameters
    ----------
    model
        The network; ``.grad`` of its parameters is read if present (call after backward).
    activations
        ``[(batch, width_i)]`` post-ReLU activations from ``forward_with_activations``; use a
        batch of a few hundred rows for a meaningful effective rank (it is ``<= batch``).
    tau
        Dormancy threshold of :func:`dormant_mask` (``0``: dead units only).

    Returns
    -------
    dict[str, float]
        ``dormant_fraction_layer{i}`` in ``[0, 1]`` per hidden layer; ``effective_rank``
        (Roy & Vetterli 2007: ``exp`` of the entropy of the normalised singular values of the
        last hidden layer's features, in ``[1, width]``); ``weight_magnitude``, the mean
        ``|w|`` over all parameters; ``grad_norm``, the global L2 norm of the gradients
        (``0.0`` without gradients).
    """
    out: dict[str, float] = {}
    for i, h in enumerate(activations):
        out[f"dormant_fraction_layer{i}"] = float(dormant_mask(h.float(), tau).float().mean())
    out["effective_rank"] = effective_rank(activations[-1]) if activations else 0.0
    params = list(model.parameters())
    out["weight_magnitude"] = float(torch.cat([p.abs().flatten() for p in params]).mean())
    grads = [p.grad.flatten() for p in params if p.grad is not None]
    out["grad_norm"] = float(torch.cat(grads).norm()) if grads else 0.0
    return out


def effective_rank(features: torch.Tensor) -> float:
    """Effective rank of ``features`` ``(batch, width)``; ``0.0`` if all zero."""
    s = torch.linalg.svdvals(features.detach().float())
    if float(s.sum()) <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
