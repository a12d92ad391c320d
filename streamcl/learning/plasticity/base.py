"""The plasticity methods' base class and the unit re-initialisation they share."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from streamcl.learning.network import MLP

__all__ = ["PlasticityMethod", "Seeded", "next_layer", "reinit_units"]


def next_layer(model: MLP, i: int) -> nn.Linear:
    """The layer that reads hidden layer ``i`` (``hidden_layers[i + 1]`` or ``head``)."""
    layer = model.hidden_layers[i + 1] if i + 1 < len(model.hidden_layers) else model.head
    return cast(nn.Linear, layer)


def reinit_units(
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
    layer, nxt = cast(nn.Linear, model.hidden_layers[i]), next_layer(model, i)
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


class Seeded(PlasticityMethod):
    """A method with its own random generator, whose state is part of the method's state."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """``{"rng": uint8 tensor}``: the generator's state."""
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore the generator's state from :meth:`state_dict`."""
        self.gen.set_state(d["rng"])
