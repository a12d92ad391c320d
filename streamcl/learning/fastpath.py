"""A numpy forward/backward/optimiser step for the MLP, in place on the torch parameters.

For the small networks of a stream learner, each torch operator costs more dispatch time
than arithmetic: a 2-hidden-layer step with autograd and ``torch.optim.Adam`` runs ~20
operators and about 1 ms on a small CPU. This module does the same step with ~25 numpy
calls on numpy *views* of the parameters (``tensor.numpy()`` shares memory), so the
``nn.Module`` stays the single source of truth: plasticity methods, snapshots and
checkpoints see the same weights, and Adam's moments live in the torch optimiser's own
state tensors (``step``, ``exp_avg``, ``exp_avg_sq``), updated exactly as
``torch.optim.Adam`` (``foreach=False``, no weight decay, no amsgrad) would, so
``optimizer.state_dict()`` stays valid and the learner may switch paths at any time.

Used for ``sgd`` and ``adam`` when no plasticity method adds a loss term; UPGD and
L2-init / spectral regularisation go through autograd.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from streamcl.models.kernels import forward

__all__ = ["forward", "numpy_params", "step"]


def numpy_params(model: torch.nn.Module) -> list[np.ndarray]:
    """Views ``[W0, b0, W1, b1, ..., W_head, b_head]`` float32 sharing the tensors' memory."""
    return [p.detach().numpy() for p in model.parameters()]


def _loss_grad(out: np.ndarray, y: np.ndarray, kind: str) -> tuple[float, np.ndarray]:
    """Mean loss and its gradient w.r.t. ``out`` ``(batch, n_outputs)``.

    ``kind``: ``"ce"`` (``y`` int64 class indices), ``"squared"`` or ``"absolute"``
    (``y`` float32 standardised targets, one output).
    """
    n = len(out)
    if kind == "ce":
        # ufunc reductions: the ndarray methods' Python wrappers cost more than the work
        z = out - np.maximum.reduce(out, 1, keepdims=True)
        e = np.exp(z)
        s = np.add.reduce(e, 1, keepdims=True)
        rows = np.arange(n)
        loss = float(np.add.reduce(np.log(s[:, 0]) - z[rows, y]) / n)  # np.mean's arithmetic
        g = e / s
        g[rows, y] -= 1.0
        return loss, g / n
    diff = out[:, 0] - y
    if kind == "squared":
        return float(np.mean(diff * diff)), (2.0 / n * diff)[:, None]
    return float(np.mean(np.abs(diff))), (np.sign(diff) / n)[:, None]


def step(
    tensors: list[torch.Tensor],
    params: list[np.ndarray],
    optimizer: torch.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    max_norm: float,
    keep_grads: bool = False,
) -> tuple[float, float, list[np.ndarray]]:
    """One SGD or Adam step in place; see the module docstring.

    Parameters
    ----------
    tensors
        The MLP's parameters ``[W0, b0, ..., W_head, b_head]`` (``Linear`` layers, ReLU
        between them), as ``list(model.parameters())``.
    params
        :func:`numpy_params` of the same model.
    optimizer
        ``torch.optim.SGD`` (no momentum) or ``torch.optim.Adam``; its ``lr`` is read from
        the first param group and its state is updated.
    x
        ``(batch, n_inputs)`` float32.
    y
        ``(batch,)`` int64 class indices or float32 standardised targets.
    kind
        ``"ce"``, ``"squared"`` or ``"absolute"``.
    max_norm
        Gradients are scaled down to this global L2 norm.
    keep_grads
        Also store the gradients in ``p.grad`` (for health metrics).

    Returns
    -------
    loss : float
        Mean loss before the step.
    norm : float
        Global gradient norm before clipping; the step is skipped (nothing changes) when
        the loss or the norm is not finite.
    activations : list[numpy.ndarray]
        Post-ReLU hidden activations ``(batch, width_i)``.
    """
    with np.errstate(all="ignore"):  # non-finite inputs give a NaN loss: the step is skipped
        out, acts = forward(params, x)
        loss, g = _loss_grad(out, y, kind)
    if not math.isfinite(loss):
        return loss, math.nan, acts
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    inputs = [x, *acts]
    for i in range(len(params) - 2, -1, -2):
        grads[i] = g.T @ inputs[i // 2]
        grads[i + 1] = np.add.reduce(g, 0)
        if i:
            g = g @ params[i]
            g *= inputs[i // 2] > 0
    norm = math.sqrt(sum(float(np.vdot(gr, gr)) for gr in grads))
    if not math.isfinite(norm):
        return loss, norm, acts
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for gr in grads:
            gr *= scale
    if keep_grads:
        for p, gr in zip(tensors, grads, strict=True):
            p.grad = torch.from_numpy(np.ascontiguousarray(gr, dtype=np.float32))
    group = optimizer.param_groups[0]
    if isinstance(optimizer, torch.optim.Adam):
        _adam(optimizer, group, tensors, params, grads)
    else:
        lr = group["lr"]
        for arr, gr in zip(params, grads, strict=True):
            arr -= lr * gr
    return loss, norm, acts


def _adam(
    optimizer: torch.optim.Optimizer,
    group: dict[str, Any],
    tensors: list[torch.Tensor],
    params: list[np.ndarray],
    grads: list[np.ndarray],
) -> None:
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    for t, p, gr in zip(tensors, params, grads, strict=True):
        state = optimizer.state[t]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(t, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(t, memory_format=torch.preserve_format)
        step_t = state["step"]
        step_t += 1
        n = float(step_t)
        m, v = state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()
        m += (1.0 - beta1) * (gr - m)
        v *= beta2
        v += (1.0 - beta2) * gr * gr
        denom = np.sqrt(v) / math.sqrt(1.0 - beta2**n)
        denom += eps
        p -= (lr / (1.0 - beta1**n)) * m / denom
