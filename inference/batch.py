"""The running batch's tensors: a left-padded KV cache, its attention mask and positions.

See docs/ARCHITECTURE.md, "Engine". Rows have different lengths, so every row is aligned on
the right: row i's real tokens occupy the last columns of the cache and the mask marks its
left padding. Each row keeps its own position counter, so padding never shifts the rotary
positions. New rows are prefilled together (padded the same way) and spliced in at a step
boundary; rows that end are dropped at once and padding columns nobody needs are trimmed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from inference.errors import InferenceError
from inference.lora import BASE_SLOT, LoraContext, new_rows_version


def check_supported(model) -> None:
    """Refuse models whose cache this layout cannot pad and splice (sliding-window layers)."""
    layers = DynamicCache(config=model.config).layers
    if any(type(layer) is not DynamicLayer for layer in layers):
        raise InferenceError(
            "unsupported_model",
            "This base model uses sliding-window attention, which the batching engine "
            "does not support yet.",
        )


class Batch:
    def __init__(self, model, context: LoraContext, device: torch.device):
        self._model = model
        self._context = context
        self._device = device
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=device)  # [rows, columns]
        self.positions = torch.zeros(0, dtype=torch.long, device=device)  # next position per row
        self.slots = torch.zeros(0, dtype=torch.long, device=device)  # adapter slot per row
        self._rows_version = new_rows_version()

    @property
    def size(self) -> int:
        return int(self.slots.shape[0])

    def prefill(
        self, prompts: list[list[int]], slots: list[int], every_position: bool = False
    ) -> tuple[torch.Tensor, Batch]:
        """Run new prompts together; return their last-position logits and a batch of them.
        `every_position`: the logits of every column instead, [rows, columns, vocab] (prompt
        log-probabilities; the prompts are right-aligned, so a row's last column is its last)."""
        width = max(len(prompt) for prompt in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        fresh = Batch(self._model, self._context, self._device)
        fresh.mask = mask.to(self._device)
        fresh.slots = torch.tensor(slots, dtype=torch.long, device=self._device)
        fresh.positions = fresh.mask.sum(dim=1)
        positions = (fresh.mask.cumsum(dim=1) - 1).clamp(min=0)
        fresh.cache = DynamicCache(config=self._model.config)
        logits = fresh._forward(ids.to(self._device), positions, 0 if every_position else 1)
        return logits, fresh

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """One step for every row: `tokens` [rows] in, next-token logits [rows, vocab] out."""
        self.mask = F.pad(self.mask, (0, 1), value=1)
        logits = self._forward(tokens[:, None], self.positions[:, None])
        self.positions = self.positions + 1
        return logits

    def _forward(
        self, ids: torch.Tensor, positions: torch.Tensor, logits_to_keep: int = 1
    ) -> torch.Tensor:
        uses_adapters = bool((self.slots != BASE_SLOT).any())
        self._context.use(self.slots, self._rows_version, uses_adapters)
        output = self._model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        self.cache = output.past_key_values
        return output.logits[:, -1] if logits_to_keep == 1 else output.logits

    def extend(self, other: Batch) -> None:
        """Append another batch's rows, padding the shorter cache on the left."""
        if self.size == 0:
            self.cache, self.mask, self.positions = other.cache, other.mask, other.positions
            self.slots = other.slots
            self._rows_version = new_rows_version()
            return
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])
            mine.values = torch.cat(
                [_pad_left(mine.values, width), _pad_left(theirs.values, width)]
            )
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(other.mask, width)])
        self.positions = torch.cat([self.positions, other.positions])
        self.slots = torch.cat([self.slots, other.slots])
        self._rows_version = new_rows_version()

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order), and drop columns that are padding for all."""
        if len(rows) == self.size:
            return
        index = torch.tensor(rows, dtype=torch.long, device=self._device)
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        self.slots = self.slots.index_select(0, index)
        self._rows_version = new_rows_version()
        if not rows:
            self.cache = None
            self.mask = self.mask[:, :0]
            return
        start = int(self.mask.any(dim=0).long().argmax())
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Pad the sequence dimension (-2 for [rows, heads, seq, dim] caches, -1 for masks)."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    padding = (missing, 0) if dim == -1 else (0, 0, missing, 0)
    return F.pad(tensor, padding)
