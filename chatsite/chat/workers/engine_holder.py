"""The engine of this web process: the model itself (INFERENCE_MODE=local) or a LoRAX client
(INFERENCE_MODE=lorax); one per process, made once."""

from __future__ import annotations

import atexit
import logging
import os
import threading

from django.conf import settings

from chatsite.errors import ChatError
from inference.types import Engine

log = logging.getLogger(__name__)
_lock = threading.Lock()
_engine: Engine | None = None


def local_engine() -> Engine:
    """The process's engine, loading the base model on first use (blocking: call off-loop)."""
    return _once(_load)


def process_engine() -> Engine:
    """The engine that answers in this web process, for the mode (blocking: call off-loop)."""
    return lorax_engine() if settings.INFERENCE_MODE == "lorax" else local_engine()


def lorax_engine() -> Engine:
    """A client of the LoRAX server at LORAX_URL; it needs the base model's tokenizer only."""
    return _once(_lorax)


def _once(make) -> Engine:
    """One engine per process, whichever kind the mode asked for first."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = make()
        return _engine


def _lorax() -> Engine:
    from functools import partial

    from transformers import AutoTokenizer

    from inference.lorax_backend import LoraxEngine
    from inference.model import render_chat

    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.BASE_MODEL)
    except Exception as exc:  # as for a local model: a sentence, not a crash
        log.exception("could not load the tokenizer of BASE_MODEL=%s", settings.BASE_MODEL)
        raise ChatError(
            "engine_unavailable",
            "The chat template could not be loaded; an administrator needs to check BASE_MODEL "
            f"({type(exc).__name__}).",
        ) from exc
    return LoraxEngine(
        settings.LORAX_URL, api_key=settings.LORAX_API_KEY, render=partial(render_chat, tokenizer)
    )


def loaded_engine() -> Engine | None:
    """The engine if this process has loaded one; never loads it (metrics scrapes)."""
    return _engine


def _load() -> Engine:
    import torch

    from inference.engine import BatchEngine

    threads = settings.ENGINE_THREADS or _default_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        engine = BatchEngine(
            settings.BASE_MODEL,
            device=settings.ENGINE_DEVICE,
            adapter_max_rank=settings.ADAPTER_MAX_RANK,
            max_batch_size=settings.ENGINE_MAX_BATCH_SIZE,
            max_batch_tokens=settings.ENGINE_MAX_BATCH_TOKENS,
            max_queued=settings.ENGINE_MAX_QUEUED,
            max_adapters=settings.ADAPTER_CACHE_SLOTS,
            quantization=settings.BASE_QUANTIZATION,
        )
    except Exception as exc:  # a missing or broken model must reach the user as a sentence
        log.exception("could not load BASE_MODEL=%s", settings.BASE_MODEL)
        raise ChatError(
            "engine_unavailable",
            "The model could not be loaded; an administrator needs to check BASE_MODEL "
            f"({type(exc).__name__}).",
        ) from exc
    log.info("engine ready: %s", settings.BASE_MODEL)
    # The engine's thread is a daemon: at exit it would still be inside torch while the
    # interpreter tears down, and the process aborted ("terminate called without an active
    # exception") when Daphne was stopped mid-answer. Its loop ends between two steps instead;
    # the cut-off answers are marked interrupted by the next start.
    atexit.register(engine.close)
    return engine


def _default_threads() -> int | None:
    """In local mode on a CPU the web tier shares the machine with the engine: leave it a core.
    With every core, torch's spinning threads delayed each request and token behind them (the
    streaming overhead halved with one core left, docs/BENCHMARKS.md). None: torch's default."""
    from inference.model import pick_device

    cores = os.cpu_count() or 1
    on_cpu = pick_device(settings.ENGINE_DEVICE).type == "cpu"
    if settings.INFERENCE_MODE == "local" and on_cpu and cores > 1:
        return cores - 1
    return None
