"""The running batch's tensors: a left-padded KV cache in preallocated slots, its attention mask
and positions.

See docs/ARCHITECTURE.md, "Engine". Rows have different lengths, so every row is aligned on
the right: row i's real tokens occupy the last columns of the cache and the mask marks its
left padding. Each row keeps its own position counter, so padding never shifts the rotary
positions. New rows are prefilled together (padded the same way) and spliced in at a step
boundary; rows that end are dropped at once and padding columns nobody needs are trimmed.

The cache and the mask live in buffers with spare columns: a decode step writes one column in
place and the model reads views of the columns in use, where a DynamicCache copied the whole
cache (`torch.cat`) in every layer of every step. The mask's spare columns are already "attend",
so a step needs no new mask either: the model gets a view of it, as the 4-D mask SDPA reads
(or no mask at all while no row has padding, which lets SDPA take its plain path).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from inference.errors import InferenceError
from inference.lora import BASE_SLOT, LoraContext, new_rows_version

# Spare columns a buffer gets beyond those in use: at least this many, or a quarter more, so
# long answers reallocate a few times (each a copy) rather than every so many steps.
MIN_SPARE_COLUMNS = 64


def check_supported(model) -> None:
    """Refuse models whose cache this layout cannot pad and splice (sliding-window layers)."""
    layers = DynamicCache(config=model.config).layers
    if any(type(layer) is not DynamicLayer for layer in layers):
        raise InferenceError(
            "unsupported_model",
            "This base model uses sliding-window attention, which the batching engine "
            "does not support yet.",
        )


def capacity_for(columns: int) -> int:
    return columns + max(MIN_SPARE_COLUMNS, columns // 4)


class SlotLayer(DynamicLayer):
    """One layer's keys and values, [rows, heads, capacity, dim] buffers written in place;
    `keys` and `values` are views of the `length` columns in use (what attention reads)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        if self._keys is None:
            self._keys = _buffer_like(key_states, key_states.shape[0], self.capacity)
            self._values = _buffer_like(value_states, value_states.shape[0], self.capacity)
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
        end = self.length + key_states.shape[-2]
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self._set_length(end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys = self._keys[:, :, :length]
        self.values = self._values[:, :, :length]

    def resized(self, capacity: int, rows: torch.Tensor | None = None, start: int = 0) -> None:
        """Move into buffers of `capacity` columns: the given rows (all when None), and the
        columns from `start` on (those before are padding for every row kept)."""
        keys, values = self.keys[:, :, start:], self.values[:, :, start:]
        if rows is not None:
            keys, values = keys.index_select(0, rows), values.index_select(0, rows)
        self.capacity = capacity
        self._keys = _buffer_like(keys, keys.shape[0], capacity)
        self._values = _buffer_like(values, values.shape[0], capacity)
        self._keys[:, :, : keys.shape[-2]] = keys
        self._values[:, :, : values.shape[-2]] = values
        self._set_length(keys.shape[-2])

    def stacked(self, other: SlotLayer, width: int, capacity: int) -> None:
        """Become this layer's rows then the other's, both right-aligned on `width` columns."""
        rows = self.keys.shape[0]
        keys = _buffer_like(self.keys, rows + other.keys.shape[0], capacity)
        values = _buffer_like(self.values, rows + other.keys.shape[0], capacity)
        for part, (k, v) in enumerate(((self.keys, self.values), (other.keys, other.values))):
            where = slice(0, rows) if part == 0 else slice(rows, None)
            keys[where, :, width - k.shape[-2] : width] = k
            values[where, :, width - v.shape[-2] : width] = v
        self.capacity, self._keys, self._values = capacity, keys, values
        self._set_length(width)


def _buffer_like(tensor: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    # Zeros, not empty: padding columns are masked, but a NaN there would still poison the sum.
    batch, heads, _, dim = tensor.shape
    return tensor.new_zeros(rows, heads, columns, dim)


class Batch:
    def __init__(self, model, context: LoraContext, device: torch.device):
        self._model = model
        self._context = context
        self._device = device
        self.cache: Cache | None = None
        self.length = 0  # columns in use, the same for every row and layer
        # [rows, capacity]: True where a row attends; spare columns are True already.
        self._attend = torch.ones(0, 0, dtype=torch.bool, device=device)
        self._padded = False  # whether some row has padding (a False column in use)
        self.positions = torch.zeros(0, dtype=torch.long, device=device)  # next position per row
        self.slots = torch.zeros(0, dtype=torch.long, device=device)  # adapter slot per row
        self._rows_version = new_rows_version()

    @property
    def size(self) -> int:
        return int(self.slots.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """[rows, columns]: True at each row's real tokens, False at its left padding."""
        return self._attend[:, : self.length]

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
        mask = mask.to(self._device)
        fresh.slots = torch.tensor(slots, dtype=torch.long, device=self._device)
        fresh.positions = mask.sum(dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        capacity = capacity_for(width)
        layers = self._model.config.get_text_config().num_hidden_layers
        fresh.cache = Cache(layers=[SlotLayer(capacity) for _ in range(layers)])
        fresh._set_attend(mask.bool(), capacity)
        # The prompt pass takes the 2-D mask: transformers builds its causal 4-D mask from it.
        logits = fresh._forward(
            ids.to(self._device), positions, mask if fresh._padded else None,
            0 if every_position else 1,
        )
        fresh.length = width
        return logits, fresh

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """One step for every row: `tokens` [rows] in, next-token logits [rows, vocab] out."""
        if self.length + 1 > self._attend.shape[1]:
            self._resize(capacity_for(self.length + 1))
        self.length += 1
        # [rows, 1, 1, columns]: what SDPA reads for one query per row, a view of the buffer.
        mask = self._attend[:, None, None, : self.length] if self._padded else None
        logits = self._forward(tokens[:, None], self.positions[:, None], mask)
        self.positions = self.positions + 1
        return logits

    def _forward(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
        logits_to_keep: int = 1,
    ) -> torch.Tensor:
        uses_adapters = bool((self.slots != BASE_SLOT).any())
        self._context.use(self.slots, self._rows_version, uses_adapters)
        output = self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        return output.logits[:, -1] if logits_to_keep == 1 else output.logits

    def _set_attend(self, mask: torch.Tensor, capacity: int) -> None:
        """The mask of the columns in use, into a buffer of `capacity` columns."""
        attend = torch.ones(mask.shape[0], capacity, dtype=torch.bool, device=self._device)
        attend[:, : mask.shape[1]] = mask
        self._attend = attend
        self._padded = not bool(mask.all())

    def _resize(self, capacity: int) -> None:
        for layer in self.cache.layers:
            layer.resized(capacity)
        self._set_attend(self.mask, capacity)

    def extend(self, other: Batch) -> None:
        """Append another batch's rows, padding the shorter cache on the left."""
        if self.size == 0:
            self.cache, self._attend, self._padded = other.cache, other._attend, other._padded
            self.length, self.positions, self.slots = other.length, other.positions, other.slots
            self._rows_version = new_rows_version()
            return
        width = max(self.length, other.length)
        capacity = capacity_for(width)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.stacked(theirs, width, capacity)
        mask = torch.zeros(self.size + other.size, width, dtype=torch.bool, device=self._device)
        mask[: self.size, width - self.length :] = self.mask
        mask[self.size :, width - other.length :] = other.mask
        self._set_attend(mask, capacity)
        self.length = width
        self.positions = torch.cat([self.positions, other.positions])
        self.slots = torch.cat([self.slots, other.slots])
        self._rows_version = new_rows_version()

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order), and drop columns that are padding for all."""
        if len(rows) == self.size:
            return
        index = torch.tensor(rows, dtype=torch.long, device=self._device)
        self.positions = self.positions.index_select(0, index)
        self.slots = self.slots.index_select(0, index)
        self._rows_version = new_rows_version()
        if not rows:
            self.cache, self.length = None, 0
            self._set_attend(self._attend[:0, :0], 0)
            return
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).long().argmax())
        mask = mask[:, start:]
        capacity = capacity_for(mask.shape[1])
        for layer in self.cache.layers:
            layer.resized(capacity, index, start)
        self._set_attend(mask, capacity)
        self.length = mask.shape[1]
