"""The parametric part of the learner: a multi-layer perceptron that can grow.

Inputs and outputs are discovered online: a new feature column (a new numeric
feature or a new one-hot category) adds an input, a new class label adds an output
unit. Growing keeps every existing weight, so what was learned is not lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """A ReLU multi-layer perceptron with growable input and output layers.

    Parameters
    ----------
    n_inputs
        Number of input columns (``>= 1``).
    hidden
        Width of each hidden layer, e.g. ``(64, 64)``; may be empty (a linear model).
    n_outputs
        Number of output units (classes, or 1 for regression), ``>= 1``.
    seed
        Seed of the network's own generator (:attr:`gen`), which draws the initial weights
        and those of units added by growth, so the global torch RNG is never used.

    Attributes
    ----------
    hidden_layers : nn.ModuleList
        The hidden ``nn.Linear`` layers, input side first.
    head : nn.Linear
        The output layer, ``(n_outputs, last_hidden_width)``.
    generation : int
        Counts layer replacements by growth: caches of the parameters (``Trainer``'s
        numpy views) are valid while it is unchanged.

    Notes
    -----
    Plasticity methods (``streamcl.learning.plasticity``) address hidden unit ``j`` of hidden layer
    ``i`` as row ``j`` of ``hidden_layers[i].weight`` (its incoming weights) and column ``j``
    of the next layer's weight (``hidden_layers[i + 1]`` or ``head``; its outgoing weights).
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_outputs: int, seed: int = 0) -> None:
        super().__init__()
        if n_inputs < 1 or n_outputs < 1:
            raise ValueError(f"n_inputs and n_outputs must be >= 1, got {n_inputs}, {n_outputs}")
        self.gen = torch.Generator().manual_seed(seed)
        widths = [n_inputs, *hidden]
        self.hidden_layers = nn.ModuleList(_linear(a, b, self.gen) for a, b in pairwise(widths))
        self.head = _linear(widths[-1], n_outputs, self.gen)
        self.generation = 0

    @property
    def n_inputs(self) -> int:
        """Number of input columns."""
        return int(self._first().in_features)

    def _first(self) -> nn.Linear:
        """The layer that reads the inputs."""
        first = self.hidden_layers[0] if len(self.hidden_layers) else self.head
        assert isinstance(first, nn.Linear)
        return first

    @property
    def n_outputs(self) -> int:
        """Number of output units."""
        return int(self.head.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_outputs)`` float32 for inputs ``(batch, n_inputs)`` float32."""
        for layer in self.hidden_layers:
            x = torch.relu(layer(x))
        out: torch.Tensor = self.head(x)
        return out

    def forward_with_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the post-ReLU activations of every hidden layer.

        Returns
        -------
        logits : torch.Tensor
            ``(batch, n_outputs)`` float32.
        activations : list[torch.Tensor]
            One ``(batch, width_i)`` tensor per hidden layer, input side first.
        """
        acts: list[torch.Tensor] = []
        for layer in self.hidden_layers:
            x = torch.relu(layer(x))
            acts.append(x)
        return self.head(x), acts

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer's features ``(batch, width)`` (the inputs if there is none)."""
        for layer in self.hidden_layers:
            x = torch.relu(layer(x))
        return x

    def grow_inputs(self, n_inputs: int) -> None:
        """Add zero-weight input columns up to ``n_inputs``; existing outputs are unchanged."""
        first = self._first()
        extra = n_inputs - first.in_features
        if extra <= 0:
            return
        grown = _resize(first, n_inputs, first.out_features, self.gen)
        if len(self.hidden_layers):
            self.hidden_layers[0] = grown
        else:
            self.head = grown
        self.generation += 1

    def grow_outputs(self, n_outputs: int) -> None:
        """Add freshly initialised output units up to ``n_outputs`` (new classes)."""
        if n_outputs > self.head.out_features:
            self.head = _resize(self.head, self.head.in_features, n_outputs, self.gen)
            self.generation += 1


def _linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init, uniform(+-1/sqrt(n_in)), drawn from ``gen``."""
    layer = nn.Linear(n_in, n_out, device="meta").to_empty(device="cpu")
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(n_out, n_in, generator=gen) * 2 - 1) * bound)
        layer.bias.copy_((torch.rand(n_out, generator=gen) * 2 - 1) * bound)
    return layer


def _resize(
    layer: nn.Linear, in_features: int, out_features: int, gen: torch.Generator
) -> nn.Linear:
    """A larger copy of ``layer``: old weights kept, new input columns zero, new rows fresh."""
    new = _linear(in_features, out_features, gen)
    with torch.no_grad():
        new.weight[:, layer.in_features :] = 0.0
        new.weight[: layer.out_features, : layer.in_features] = layer.weight
        new.bias[: layer.out_features] = layer.bias
    return new
