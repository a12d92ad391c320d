"""Plasticity health metrics: dormant units, effective rank, weight and gradient magnitude."""

from __future__ import annotations

import torch

from streamcl.learning.network import MLP

__all__ = ["dormant_mask", "effective_rank", "health"]


def dormant_mask(activations: torch.Tensor, tau: float = 0.0) -> torch.Tensor:
    """``(width,)`` bool: which units are tau-dormant (Sokar et al. 2023).

    A unit is dormant when ``E|h_j| / mean_k E|h_k| <= tau``, for ``activations``
    ``(batch, width)`` float (or the ``(width,)`` batch means of ``|h|``). ``tau=0`` counts
    only units that are zero on every input (dead).
    """
    mean_abs = activations.abs().mean(0) if activations.dim() == 2 else activations.abs()
    score = mean_abs / (mean_abs.mean() + 1e-12)
    return score <= tau


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
