"""The adapters held in the batched LoRA layers: loaded on demand, evicted least recently used.

See docs/ARCHITECTURE.md, "Engine". Like vLLM's LoRA model manager, the cache owns a fixed number
of slots in the stacked LoRA weights (`inference.lora`). An adapter keeps its slot while any
batch row uses it; idle ones are evicted, least recently used first, when a slot or bytes under
the memory budget are needed; pinned ones stay until `evict`. Only the engine thread changes it;
`stats` may be read from any thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import torch

from inference.adapters import AdapterWeights, read_adapter
from inference.errors import AdapterError
from inference.lora import BASE_SLOT, LoraLayers
from inference.types import AdapterRef


@dataclass(eq=False)
class _Entry:
    ref: AdapterRef
    slot: int
    rank: int
    nbytes: int
    pinned: bool = False
    users: int = 0  # batch rows using it now
    last_used: int = 0
    evict_when_idle: bool = False


class AdapterCache:
    def __init__(
        self,
        layers: LoraLayers,
        *,
        max_bytes: int,
        max_rank: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self._layers = layers
        self.max_slots = layers.slots - 1  # slot 0 is the plain base model
        self.max_bytes = max_bytes
        self.max_rank = max_rank
        self._dtype, self._device = dtype, device
        self._entries: dict[AdapterRef, _Entry] = {}
        self._staged: dict[AdapterRef, AdapterWeights] = {}
        self._clock = itertools.count(1)
        self._lock = threading.Lock()  # guards the entries and counters for `stats`
        self._counters = {"hits": 0, "misses": 0, "loads": 0, "evictions": 0, "load_ms": 0.0}

    def acquire(self, ref: AdapterRef | None) -> int | None:
        """The slot for a new batch row (loading the adapter if needed), or None when every
        slot is taken by adapters in use and the row must wait. Raises AdapterError."""
        if ref is None:
            return BASE_SLOT
        entry = self._entries.get(ref)
        if entry is not None:
            self._count("hits")
        elif ref not in self._staged:  # a row waiting for a slot counts one miss, not one a step
            self._count("misses")
        if entry is None:
            entry = self._load(ref)
            if entry is None:
                return None
        entry.users += 1
        entry.last_used = next(self._clock)
        return entry.slot

    def release(self, ref: AdapterRef | None) -> None:
        entry = self._entries.get(ref) if ref is not None else None
        if entry is None:
            return
        entry.users -= 1
        if entry.users == 0 and entry.evict_when_idle:
            self._remove(entry)

    def preload(self, ref: AdapterRef, *, pin: bool) -> None:
        entry = self._entries.get(ref) or self._load(ref)
        if entry is None:
            raise AdapterError(
                "adapter_cache_full",
                f"The adapter {ref.name!r} cannot be loaded now: every adapter slot is in use.",
            )
        entry.pinned = entry.pinned or pin
        entry.last_used = next(self._clock)

    def evict(self, name: str) -> bool:
        """Drop the adapters of that name now, or when their last row ends. False: none cached."""
        found = [entry for entry in self._entries.values() if entry.ref.name == name]
        for entry in found:
            entry.pinned = False
            if entry.users:
                entry.evict_when_idle = True
            else:
                self._remove(entry)
        return bool(found)

    def resident(self) -> list[str]:
        """Names of the adapters loaded now (any thread): a request for one is a hit."""
        with self._lock:
            return sorted(entry.ref.name for entry in self._entries.values())

    def stats(self) -> dict:
        with self._lock:
            entries = list(self._entries.values())
            return {
                **self._counters,
                "load_ms": round(self._counters["load_ms"], 3),
                # Per adapter, for the admin's cache view.
                "adapters": {
                    entry.ref.name: {"loaded": True, "pinned": entry.pinned, "bytes": entry.nbytes}
                    for entry in entries
                },
                "slots": self.max_slots,
                "bytes": sum(entry.nbytes for entry in entries),
                "max_bytes": self.max_bytes,
                "pinned": sorted(entry.ref.name for entry in entries if entry.pinned),
                "loaded": sorted(entry.ref.name for entry in entries),
            }

    def _load(self, ref: AdapterRef) -> _Entry | None:
        started = time.perf_counter()
        weights = self._staged.pop(ref, None) or read_adapter(
            ref,
            layer=self._layers.base_linear,
            linear_names=self._layers.linear_names(),
            max_rank=self.max_rank,
            dtype=self._dtype,
            device=self._device,
        )
        if weights.nbytes > self.max_bytes:
            raise AdapterError(
                "invalid_adapter",
                f"The adapter {ref.name!r} needs {weights.nbytes} bytes, more than the adapter "
                f"cache's whole budget of {self.max_bytes}.",
            )
        slot = self._make_room(weights.nbytes)
        if slot is None and not any(entry.users for entry in self._entries.values()):
            # Only pinned adapters hold the room: waiting would never end.
            raise AdapterError(
                "adapter_cache_full",
                f"The adapter {ref.name!r} cannot be loaded: pinned adapters fill the cache.",
            )
        if slot is None:
            self._staged = {ref: weights}  # read once; it waits for a slot with its row
            return None
        self._layers.write(slot, weights.factors)
        entry = _Entry(ref, slot, weights.rank, weights.nbytes, last_used=next(self._clock))
        with self._lock:
            self._entries[ref] = entry
            self._counters["loads"] += 1
            self._counters["load_ms"] += (time.perf_counter() - started) * 1000
        return entry

    def _make_room(self, nbytes: int) -> int | None:
        """Evict idle, unpinned adapters (oldest first) until a slot and the bytes are free."""
        while self._free_slot() is None or self._bytes() + nbytes > self.max_bytes:
            idle = [e for e in self._entries.values() if not e.users and not e.pinned]
            if not idle:
                return None
            self._remove(min(idle, key=lambda entry: entry.last_used))
        return self._free_slot()

    def _free_slot(self) -> int | None:
        taken = {entry.slot for entry in self._entries.values()}
        return next((s for s in range(1, self.max_slots + 1) if s not in taken), None)

    def _bytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def _remove(self, entry: _Entry) -> None:
        with self._lock:
            del self._entries[entry.ref]
            self._counters["evictions"] += 1
        self._layers.write(entry.slot, {})  # zeros, so a stale slot can never leak into a row

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1
