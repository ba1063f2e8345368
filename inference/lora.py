"""Batched LoRA: one forward pass where every row of the batch has its own adapter.

See docs/ARCHITECTURE.md, "Engine". This is the BGMV idea of Punica and S-LoRA, in plain torch.
Each adapted Linear keeps the LoRA factors of every cached adapter stacked into two tensors,
`a` of shape [slots, in, rank] and `b` of shape [slots, rank, out] (scaling folded into `b`,
smaller ranks padded with zeros, slot 0 all zeros for rows on the plain base model). A forward
pass gathers each row's factors by its slot number and adds `x @ a[slot] @ b[slot]` with two
batched matrix products, so its cost does not grow with the number of distinct adapters.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

BASE_SLOT = 0


class LoraContext:
    """Which slot each batch row uses in the forward pass under way. Shared by all layers.

    `key` changes whenever the rows or the stacked weights change; until then every layer reuses
    the factors it gathered, so a steady decode step does no gathering at all.
    """

    def __init__(self):
        self.slots: torch.Tensor | None = None
        self.uses_adapters = False
        self.key: tuple[int, int] = (0, 0)
        self._weights_version = 0

    def use(self, slots: torch.Tensor, rows_version: int, uses_adapters: bool) -> None:
        self.slots = slots
        self.uses_adapters = uses_adapters
        self.key = (rows_version, self._weights_version)

    def weights_changed(self) -> None:
        self._weights_version += 1
        self.key = (self.key[0], self._weights_version)


_versions = itertools.count(1)


def new_rows_version() -> int:
    """A fresh number for a new set of batch rows (see `LoraContext.use`)."""
    return next(_versions)


class BatchedLoraLinear(nn.Module):
    """A base Linear plus the LoRA updates of whichever adapter each batch row uses."""

    def __init__(self, base: nn.Linear, context: LoraContext, slots: int):
        super().__init__()
        self.base = base
        # The factors' dtype: a quantized base (inference.quantization) names its float one.
        self.dtype = getattr(base, "dtype", base.weight.dtype)
        self.context = context
        self.slots = slots
        self.rank = 0
        self.a: torch.Tensor | None = None  # [slots, in, rank]
        self.b: torch.Tensor | None = None  # [slots, rank, out], scaling included
        self._gathered: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.a is None or not self.context.uses_adapters:
            return result
        a, b = self._factors()
        # x is [rows, tokens, in]: one small product per row, all in one call.
        return result + torch.bmm(torch.bmm(x, a), b)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        key = self.context.key
        if self._gathered is None or self._gathered[0] != key:
            slots = self.context.slots
            self._gathered = (key, self.a.index_select(0, slots), self.b.index_select(0, slots))
        return self._gathered[1], self._gathered[2]

    def write(self, slot: int, a: torch.Tensor | None, b: torch.Tensor | None) -> None:
        """Put one adapter's factors (a: [rank, in], b: [out, rank] scaled) into a slot."""
        if a is not None and a.shape[0] > self.rank:
            self._grow(a.shape[0])
        if self.a is None:
            return
        self.a[slot].zero_()
        self.b[slot].zero_()
        if a is not None:
            rank = a.shape[0]
            self.a[slot, :, :rank] = a.t()
            self.b[slot, :rank, :] = b.t()
        self._gathered = None

    def _grow(self, rank: int) -> None:
        """Pad every slot to a larger rank; zero columns leave the results unchanged."""
        like = {"dtype": self.dtype, "device": self.base.weight.device}
        a = torch.zeros(self.slots, self.in_features, rank, **like)
        b = torch.zeros(self.slots, rank, self.out_features, **like)
        if self.a is not None:
            a[:, :, : self.rank] = self.a
            b[:, : self.rank, :] = self.b
        self.a, self.b, self.rank = a, b, rank
        self._gathered = None


class LoraLayers:
    """The model's adapted Linear layers, wrapped on first use, by module name."""

    def __init__(self, model: nn.Module, slots: int):
        self._model = model
        self.slots = slots
        self.context = LoraContext()
        self._layers: dict[str, BatchedLoraLinear] = {}

    def write(self, slot: int, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Fill a slot: the given modules get their factors, every other adapted one zeros."""
        for name in factors:
            self._wrap(name)
        for name, layer in self._layers.items():
            a, b = factors.get(name, (None, None))
            layer.write(slot, a, b)
        self.context.weights_changed()

    def _wrap(self, name: str) -> BatchedLoraLinear:
        layer = self._layers.get(name)
        if layer is None:
            parent_name, _, child = name.rpartition(".")
            parent = self._model.get_submodule(parent_name) if parent_name else self._model
            layer = BatchedLoraLinear(getattr(parent, child), self.context, self.slots)
            setattr(parent, child, layer)
            self._layers[name] = layer
        return layer

    def base_linear(self, name: str) -> nn.Module | None:
        """The base model's layer of that name, looking through our wrapper; None if absent."""
        try:
            module = self._model.get_submodule(name)
        except AttributeError:
            return None
        return module.base if isinstance(module, BatchedLoraLinear) else module

    def linear_names(self) -> list[str]:
        names = []
        for name, module in self._model.named_modules():
            wrapped = isinstance(module, BatchedLoraLinear)
            if wrapped or (isinstance(module, nn.Linear) and not name.endswith(".base")):
                names.append(name)
        return names
