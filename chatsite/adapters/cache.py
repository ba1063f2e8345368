"""The engine's adapter cache, as the admin sees it: preload and pin, evict, and its state.

The engine (issue "Inference engine") owns the cache and offers `preload(ref, pin=True)`,
`evict(name)` and `adapter_cache_stats()`. This module is the only Django-side caller. In
INFERENCE_MODE=local the one worker is this web process's engine. An engine without these
methods (an older one) gets a plain sentence instead of a crash.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, is_dataclass

from django.conf import settings

from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import adapter_ref
from chatsite.chat.workers.engine_holder import local_engine
from chatsite.errors import ChatError


class CacheUnavailable(Exception):
    """The engine cannot do what was asked; the message says why, for the admin page."""


@dataclass(frozen=True)
class WorkerCacheState:
    worker: str
    loaded: bool
    pinned: bool
    memory_bytes: int | None


def adapter_preload(adapter: Adapter) -> None:
    _cache_call("preload", adapter_ref(adapter), pin=True)


def adapter_evict(adapter: Adapter) -> None:
    _cache_call("evict", adapter.slug)


def adapter_cache_state(adapter: Adapter) -> list[WorkerCacheState]:
    """One row per worker holding an engine: is this adapter loaded, pinned, how big."""
    stats = _cache_call("adapter_cache_stats")
    entry = _entry_for(stats, adapter.slug)
    return [
        WorkerCacheState(
            worker=f"local (pid {os.getpid()})",
            loaded=bool(entry) and bool(entry.get("loaded", True)),
            pinned=bool(entry and entry.get("pinned")),
            memory_bytes=_memory_of(entry),
        )
    ]


def _cache_call(method: str, *args, **kwargs):
    if settings.INFERENCE_MODE != "local":
        raise CacheUnavailable(
            f"Cache controls reach the engine inside the web process (INFERENCE_MODE=local); "
            f"with INFERENCE_MODE={settings.INFERENCE_MODE} the workers manage their own caches."
        )
    try:
        engine = local_engine()
    except ChatError as error:
        raise CacheUnavailable(error.message) from None
    call = getattr(engine, method, None)
    if call is None:
        raise CacheUnavailable(
            f"This engine ({type(engine).__name__}) has no adapter cache controls ({method}); "
            "adapters load on their first request instead."
        )
    try:
        return call(*args, **kwargs)
    except Exception as error:  # the engine's own words (AdapterError and the like)
        raise CacheUnavailable(getattr(error, "message", None) or str(error)) from error


def _entry_for(stats, name: str) -> dict | None:
    """This adapter's entry in the engine's stats: `{"adapters": {name: {...}}}`, a mapping of
    names to entries, or a list of entries with a `name`; anything else counts as not loaded."""
    stats = _plain(stats)
    if isinstance(stats, dict) and "adapters" in stats:
        stats = stats["adapters"]
    if isinstance(stats, dict):
        entry = _plain(stats.get(name))
        return entry if isinstance(entry, dict) else ({"loaded": True} if entry else None)
    for entry in map(_plain, stats or ()):
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def _memory_of(entry: dict | None) -> int | None:
    if not entry:
        return None
    for key in ("bytes", "memory_bytes", "size_bytes", "memory"):
        if isinstance(entry.get(key), int):
            return entry[key]
    return None


def _plain(value):
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
