"""The learner's parametric part in training: network, optimiser, plasticity, EMA, LR restarts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from streamcl.learning import fastpath
from streamcl.learning.features import merge_moments
from streamcl.learning.network import MLP
from streamcl.learning.plasticity import (
    build_methods,
    build_optimizer,
    health,
    load_methods_state_dict,
    methods_state_dict,
    optimizer_kwargs,
)
from streamcl.settings import LearnerSettings, PlasticitySettings

__all__ = ["Trainer"]

#: Gradients are clipped to this global L2 norm.
MAX_GRAD_NORM = 10.0


_WARM: set[str] = set()


def _warm_up(optimizer: str) -> None:
    """Pay torch's one-time lazy imports (about 1 s for the first optimiser) now.

    Called at construction, so the cost does not land inside a stream's first step.
    """
    if optimizer not in _WARM:
        _WARM.add(optimizer)
        build_optimizer(optimizer, [torch.zeros(1, requires_grad=True)], 0.1)
        MLP(1, (1,), 1)


class Trainer:
    """Owns the MLP, its optimiser, plasticity methods, EMA weights and LR schedule.

    Parameters
    ----------
    settings
        Learner settings (``hidden``, ``lr``, ``optimizer``, ``task``, ``loss``,
        ``ema_decay``, ``drift.lr_boost``, ``drift.lr_restart_steps``, ``seed``).
    plasticity
        Plasticity settings (methods, UPGD hyper-parameters, ``health_every``).

    Attributes
    ----------
    steps : int
        Optimiser steps taken (skipped ones excluded).
    skipped_steps : int
        Steps skipped: non-finite loss or gradient norm.
    health : dict[str, float]
        Last :func:`streamcl.learning.plasticity.health` figures (every ``health_every`` steps).
    """

    def __init__(self, settings: LearnerSettings, plasticity: PlasticitySettings) -> None:
        self.settings = settings
        self.plasticity = plasticity
        self.regression = settings.task == "regression"
        self.model: MLP | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.methods: list[Any] = []
        self.ema: list[torch.Tensor] | None = None
        self.steps = 0
        self.skipped_steps = 0
        self.health: dict[str, float] = {}
        self.restart_at: int | None = None
        self.target = np.zeros(3)  # n, mean, M2 of a regression target
        self._cache: tuple[MLP, int, list[torch.Tensor], list[np.ndarray]] | None = None
        _warm_up(settings.optimizer)
        if self.regression:
            self.loss_fn: nn.Module = nn.MSELoss() if settings.loss == "squared" else nn.L1Loss()
        else:
            self.loss_fn = nn.CrossEntropyLoss()

    # -- shapes ----------------------------------------------------------------------------
    def fit(self, x: np.ndarray) -> np.ndarray:
        """Zero-pad or cut ``x`` to the network's input width.

        Cut columns are new ones, whose weights would be zero.
        """
        assert self.model is not None
        n = self._views()[1][0].shape[1]  # the first layer's input width
        if x.shape[1] == n:
            return x
        if x.shape[1] > n:
            return np.ascontiguousarray(x[:, :n])
        out = np.zeros((len(x), n), dtype=np.float32)
        out[:, : x.shape[1]] = x
        return out

    def ensure(self, n_inputs: int, n_outputs: int) -> None:
        """Build the network, or grow it to ``n_inputs`` x ``n_outputs`` (optimiser kept)."""
        s = self.settings
        if self.model is None:
            self.model = MLP(max(n_inputs, 1), s.hidden, n_outputs, seed=s.seed)
            self.methods = build_methods(self.plasticity, self.model)
            self.optimizer = self._make_optimizer()
            self.ema = [p.detach().clone() for p in self.model.parameters()]
            return
        arrays = self._views()[1]  # [W0 (width, n_inputs), ..., b_head (n_outputs,)]
        if n_inputs <= arrays[0].shape[1] and n_outputs <= arrays[-1].shape[0]:
            return
        before = [p.shape for p in self.model.parameters()]
        self.model.grow_inputs(n_inputs)
        self.model.grow_outputs(n_outputs)
        if [p.shape for p in self.model.parameters()] != before:
            self._rebuild_optimizer()
            if self.ema is not None:
                self.ema = [
                    _grow_like(e, p) for e, p in zip(self.ema, self.model.parameters(), strict=True)
                ]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        assert self.model is not None
        name = self.settings.optimizer
        return build_optimizer(
            name,
            list(self.model.parameters()),
            self.settings.lr,
            **optimizer_kwargs(name, self.plasticity),
        )

    def _rebuild_optimizer(self) -> None:
        """New optimiser over the grown parameters; unchanged parameters keep their state."""
        old = self.optimizer
        self.optimizer = self._make_optimizer()
        if old is not None:
            mine = set(self.optimizer.param_groups[0]["params"])
            for p, state in old.state.items():
                if p in mine:
                    self.optimizer.state[p] = state
        self._set_lr()

    # -- targets (regression) --------------------------------------------------------------
    def observe_targets(self, y: np.ndarray) -> None:
        """Update the running mean / variance of a regression target with ``y`` ``(n,)``."""
        self.target = merge_moments(self.target, y)

    def target_mean(self) -> float:
        """Running mean of a regression target (0 for classification)."""
        return float(self.target[1])

    def target_std(self) -> float:
        """Running standard deviation of a regression target (1 until defined)."""
        n, _, m2 = self.target
        return float(math.sqrt(m2 / n)) if n > 1 and m2 > 0 else 1.0

    def unscale(self, out: np.ndarray) -> np.ndarray:
        """Network outputs (standardised targets) -> target units, float64."""
        return out.astype(np.float64) * self.target_std() + self.target_mean()

    # -- learning rate ---------------------------------------------------------------------
    def restart_lr(self) -> None:
        """Warm restart of the learning rate.

        The LR jumps to ``lr * lr_boost`` and decays back (cosine) over
        ``lr_restart_steps`` steps (Loshchilov, I. & Hutter, F. 2017, SGDR, ICLR 2017).
        """
        self.restart_at = self.steps

    def current_lr(self) -> float:
        """The learning rate of the next step."""
        s = self.settings
        if self.restart_at is None:
            return s.lr
        t = (self.steps - self.restart_at) / s.drift.lr_restart_steps
        if t >= 1:
            return s.lr
        return s.lr * (1 + (s.drift.lr_boost - 1) * 0.5 * (1 + math.cos(math.pi * t)))

    def _set_lr(self) -> None:
        if self.optimizer is not None:
            lr = self.current_lr()
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def on_drift(self) -> None:
        """Tell the plasticity methods about a drift."""
        if self.model is not None:
            with torch.no_grad():
                for m in self.methods:
                    m.on_drift(self.model)

    # -- the step --------------------------------------------------------------------------
    def step(
        self, x: np.ndarray, y: np.ndarray, rx: np.ndarray, ry: np.ndarray, n_classes: int
    ) -> float:
        """One optimiser step; returns the loss, or NaN if the step was skipped.

        On ``x`` ``(batch, w)`` float32 / ``y`` ``(batch,)`` (class
        indices or raw targets) plus replayed ``rx``, ``ry``; returns the loss or NaN if the
        step was skipped (non-finite loss or gradients).
        """
        width = max(x.shape[1], rx.shape[1] if len(rx) else 0)
        self.ensure(width, 1 if self.regression else n_classes)
        assert self.model is not None and self.optimizer is not None
        if len(rx):
            xb = np.concatenate([self.fit(x), self.fit(rx)])
            yb = np.concatenate([y, ry])
        else:
            xb, yb = self.fit(x), y
        if self.regression:
            yn = ((yb - self.target_mean()) / self.target_std()).astype(np.float32)
        else:
            yn = yb.astype(np.int64)
        if self.restart_at is not None:
            self._set_lr()
        every = self.plasticity.health_every
        if self.fast:
            return self._fast_step(xb, yn, every)
        xt, yt = torch.from_numpy(xb), torch.from_numpy(yn)
        need_acts = bool(self.methods) or (self.steps + 1) % every == 0
        acts: list[torch.Tensor] = []
        if need_acts:
            out, acts = self.model.forward_with_activations(xt)
        else:
            out = self.model(xt)
        loss = self.loss_fn(out[:, 0] if self.regression else out, yt)
        for m in self.methods:
            term = m.loss_term(self.model)
            if term is not None:
                loss = loss + term
        value = float(loss.detach())
        if not math.isfinite(value):
            self.skipped_steps += 1
            return math.nan
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = list(self.model.parameters())
        norm = float(nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM))
        if not math.isfinite(norm):
            self.skipped_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            return math.nan
        if self.settings.optimizer == "upgd":  # UPGD draws noise from torch's global RNG
            torch.manual_seed(self.settings.seed * 1_000_003 + self.steps)
        self.optimizer.step()
        self._after_step(acts, every)
        return value

    @property
    def fast(self) -> bool:
        """Whether steps run on the numpy path (:mod:`streamcl.learning.fastpath`)."""
        return self.settings.optimizer in ("sgd", "adam") and not any(
            m.name in ("l2_init", "spectral") for m in self.methods
        )

    def _fast_step(self, x: np.ndarray, y: np.ndarray, every: int) -> float:
        assert self.model is not None and self.optimizer is not None
        kind = self.settings.loss if self.regression else "ce"
        health_due = (self.steps + 1) % every == 0
        tensors, arrays = self._views()  # numpy work: no autograd to turn off
        loss, norm, acts = fastpath.step(
            tensors, arrays, self.optimizer, x, y, kind, MAX_GRAD_NORM, health_due
        )
        if not (math.isfinite(loss) and math.isfinite(norm)):
            self.skipped_steps += 1
            return math.nan
        self._after_step([torch.from_numpy(a) for a in acts], every)
        return loss

    def _after_step(self, acts: list[torch.Tensor], every: int) -> None:
        assert self.model is not None
        self.steps += 1
        if self.methods:
            for m in self.methods:
                m.after_step(self.model, acts, self.steps, self.optimizer)
        if self.ema is not None and self.settings.ema_decay > 0:
            with torch.no_grad():
                torch._foreach_lerp_(
                    self.ema,
                    [p.detach() for p in self.model.parameters()],
                    1.0 - self.settings.ema_decay,
                )
        if self.steps % every == 0 and acts:
            self.health = health(self.model, acts, self.plasticity.dormant_tau)

    def _views(self) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """The parameters and their numpy views, cached until the network grows.

        Checked by the model's identity and :attr:`MLP.generation` (two attribute reads;
        looking the layers up through ``nn.Module`` costs microseconds, several times a step).
        """
        m = self.model
        assert m is not None
        cache = self._cache
        if cache is None or cache[0] is not m or cache[1] != m.generation:
            cache = self._cache = (m, m.generation, list(m.parameters()), fastpath.numpy_params(m))
        return cache[2], cache[3]

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Last hidden layer's features ``(batch, width)`` float32 (the inputs if none)."""
        _, acts = fastpath.forward(self._views()[1], self.fit(x))
        return acts[-1] if acts else self.fit(x)

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Network outputs ``(batch, n_outputs)`` float32 for ``x`` (any width)."""
        out, _ = fastpath.forward(self._views()[1], self.fit(x))
        return out

    def serving_params(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Copies of ``(weight, bias)`` per layer (the EMA weights if enabled).

        Copied with numpy (a few microseconds each, against ~15 for ``Tensor.clone``).
        """
        if self.model is None:
            return ()
        if self.settings.ema_decay > 0 and self.ema is not None:
            flat = [torch.from_numpy(e.numpy().copy()) for e in self.ema]
        else:
            flat = [torch.from_numpy(a.copy()) for a in self._views()[1]]
        return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain data (optimiser state keys are strings)."""
        if self.model is None or self.optimizer is None:
            model = opt = None
        else:
            model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            raw = self.optimizer.state_dict()
            opt = {
                "state": {str(k): v for k, v in raw["state"].items()},
                "param_groups": raw["param_groups"],
            }
        return {
            "model": model,
            "shape": None if self.model is None else [self.model.n_inputs, self.model.n_outputs],
            "gen": None if self.model is None else self.model.gen.get_state(),
            "optimizer": opt,
            "plasticity": methods_state_dict(self.methods),
            "ema": None if self.ema is None else [e.clone() for e in self.ema],
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "health": dict(self.health),
            "restart_at": self.restart_at,
            "target": self.target.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.model, self.optimizer, self.methods, self.ema = None, None, [], None
        if state["model"] is not None:
            n_in, n_out = state["shape"]
            self.ensure(int(n_in), int(n_out))
            assert self.model is not None and self.optimizer is not None
            self.model.load_state_dict(state["model"])
            self.model.gen.set_state(state["gen"])
            opt = state["optimizer"]
            self.optimizer.load_state_dict(
                {
                    "state": {int(k): v for k, v in opt["state"].items()},
                    "param_groups": opt["param_groups"],
                }
            )
            load_methods_state_dict(self.methods, state["plasticity"])
            self.ema = [e.clone() for e in state["ema"]]
        self.steps = int(state["steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.health = dict(state["health"])
        self.restart_at = state["restart_at"]
        self.target = np.array(state["target"], dtype=float)


def _grow_like(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``new``'s values with ``old`` copied into the overlapping corner."""
    out = new.detach().clone()
    if old.shape != new.shape:
        cut = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, new.shape, strict=True))
        out[cut] = old[cut]
    else:
        out.copy_(old)
    return out
