"""Optimisers for a learner that never stops: SGD, Adam and UPGD, chosen by name.

UPGD (utility-based perturbed gradient descent) protects the weights that matter and
perturbs the rest, so a network keeps its plasticity without forgetting what is useful:

    Elsayed, M. & Mahmood, A. R. (2024). Addressing loss of plasticity and catastrophic
    forgetting in continual learning. ICLR 2024. arXiv:2404.00781.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from streamcl.settings import PlasticitySettings

__all__ = ["UPGD", "build_optimizer", "optimizer_kwargs"]


class UPGD(torch.optim.Optimizer):
    """Utility-based perturbed gradient descent, first-order, global utility scaling.

    Per weight ``w`` with gradient ``g`` the utility is the first-order estimate of the loss
    increase caused by removing the weight, ``u = -g * w``; its running average
    ``U <- beta * U + (1 - beta) * u`` is bias-corrected, divided by the largest corrected
    utility of all parameters, and squashed, ``s = sigmoid(U_hat / max U_hat)`` in ``(0, 1)``.
    The update is

        ``w <- (1 - lr * weight_decay) * w - lr * (g + sigma * eps) * (1 - s)``,
        ``eps ~ N(0, 1)``,

    so useful weights (large ``s``) move less and are perturbed less, useless ones
    (``s <= 0.5``) get the full gradient plus noise. If no utility is positive every
    weight is treated as useless (``s -> 0`` for negative utility).

    Parameters
    ----------
    params
        Parameters or parameter groups, as for any ``torch.optim.Optimizer``.
    lr
        Step size (paper default ``1e-5``; tune it like an SGD step size).
    weight_decay
        Decoupled weight decay per unit of ``lr`` (paper default ``1e-3``).
    beta_utility
        Decay of the utility running average (paper default ``0.999``).
    sigma
        Standard deviation of the Gaussian perturbation (paper default ``1e-3``).

    Raises
    ------
    ValueError
        A hyperparameter is out of range.

    Notes
    -----
    Noise is drawn from torch's global generator. Per-parameter state (``step`` as a
    float32 scalar tensor, ``avg_utility`` shaped like the parameter) goes through the usual
    ``Optimizer.state_dict`` and holds tensors only. The optimiser must be rebuilt when the
    network grows (the learner does that for every optimiser).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-5,
        weight_decay: float = 1e-3,
        beta_utility: float = 0.999,
        sigma: float = 1e-3,
    ) -> None:
        if lr <= 0 or weight_decay < 0 or sigma < 0 or not 0 <= beta_utility < 1:
            raise ValueError(
                f"invalid UPGD hyperparameters: lr={lr}, weight_decay={weight_decay}, "
                f"beta_utility={beta_utility}, sigma={sigma}"
            )
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "beta_utility": beta_utility,
            "sigma": sigma,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One UPGD update of every parameter that has a gradient.

        Parameters
        ----------
        closure
            Optional callable that re-evaluates the model and returns the loss.

        Returns
        -------
        float or None
            The closure's loss, if a closure was given.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        corrected = self._update_utilities()
        if not corrected:
            return loss
        global_max = max(float(u.max()) for u in corrected.values())
        scale = global_max if global_max > 0 else 1e-12
        for group in self.param_groups:
            lr, wd, sigma = group["lr"], group["weight_decay"], group["sigma"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                gate = 1.0 - torch.sigmoid(corrected[p] / scale)
                noisy = p.grad + sigma * torch.randn_like(p) if sigma > 0 else p.grad
                p.mul_(1.0 - lr * wd).add_(noisy * gate, alpha=-lr)
        return loss

    def _update_utilities(self) -> dict[torch.Tensor, torch.Tensor]:
        """Advance the utility averages; return ``{param: bias-corrected utility}``."""
        out: dict[torch.Tensor, torch.Tensor] = {}
        for group in self.param_groups:
            beta = group["beta_utility"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "avg_utility" not in state or state["avg_utility"].shape != p.shape:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["avg_utility"] = torch.zeros_like(p)
                state["step"] += 1
                state["avg_utility"].mul_(beta).add_(-p.grad * p, alpha=1.0 - beta)
                correction = 1.0 - beta ** float(state["step"])
                out[p] = state["avg_utility"] / correction
        return out


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float, **kw: Any
) -> torch.optim.Optimizer:
    """Build the learner's optimiser by name.

    Parameters
    ----------
    name
        ``"sgd"`` (plain SGD), ``"adam"`` (``torch.optim.Adam``) or ``"upgd"`` (:class:`UPGD`).
    params
        The model's parameters (or parameter groups).
    lr
        Step size.
    **kw
        Extra keyword arguments of that optimiser, e.g. for UPGD ``weight_decay``,
        ``beta_utility``, ``sigma`` (see ``streamcl.learning.plasticity.optimizer_kwargs``).

    Returns
    -------
    torch.optim.Optimizer

    Raises
    ------
    ValueError
        Unknown name, or a bad hyperparameter.
    """
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **kw)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **kw)
    if name == "upgd":
        return UPGD(params, lr=lr, **kw)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd', 'adam' or 'upgd'")


def optimizer_kwargs(name: str, settings: PlasticitySettings) -> dict[str, float]:
    """Extra :func:`build_optimizer` keyword arguments for optimiser ``name`` from settings.

    UPGD's ``weight_decay``, ``beta_utility``, ``sigma``; none for SGD and Adam.
    """
    if name != "upgd":
        return {}
    return {
        "weight_decay": settings.upgd_weight_decay,
        "beta_utility": settings.upgd_beta_utility,
        "sigma": settings.upgd_sigma,
    }
