"""Weight-space methods: shrink-and-perturb (Ash & Adams 2020), L2-init, spectral regularisation."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from streamcl.learning.network import MLP
from streamcl.learning.plasticity.base import PlasticityMethod, Seeded

__all__ = ["L2Init", "ShrinkPerturb", "SpectralReg"]


class ShrinkPerturb(Seeded):
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


class SpectralReg(Seeded):
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
