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

from collections.abc import Callable
from typing import Any

from streamcl.learning.network import MLP
from streamcl.learning.plasticity.base import PlasticityMethod
from streamcl.learning.plasticity.health import dormant_mask, effective_rank, health
from streamcl.learning.plasticity.resets import ContinualBackprop, ReDo
from streamcl.learning.plasticity.weights import L2Init, ShrinkPerturb, SpectralReg
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
