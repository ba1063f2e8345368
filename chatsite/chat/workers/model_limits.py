"""What the served model takes, in tokens and in kind, for `GET /lorax/info`
(docs/ARCHITECTURE.md, "HTTP APIs").

A prompt plus its answer must fit both the model's context and the engine's token budget
(`ENGINE_MAX_BATCH_TOKENS`); the engine refuses anything longer. When the engine is loaded here
it says; otherwise the model's config does, read from local files only (never the network).
"""

from __future__ import annotations

import functools

from django.conf import settings

from chatsite.chat.workers.engine_holder import loaded_engine


def max_total_tokens() -> int:
    positions = _loaded_base_positions() or _config_positions(settings.BASE_MODEL)
    budget = settings.ENGINE_MAX_BATCH_TOKENS
    return min(positions, budget) if positions else budget


def device_and_dtype() -> tuple[str, str]:
    """("cuda", "torch.bfloat16") and the like; LoRAX's own server when it runs the model."""
    if settings.INFERENCE_MODE == "lorax":
        return "lorax", "unknown"
    base = getattr(loaded_engine(), "base", None)
    if base is not None:
        return base.device.type, str(base.model.dtype)
    from inference.model import pick_device

    device = pick_device(settings.ENGINE_DEVICE)
    return device.type, "torch.bfloat16" if device.type == "cuda" else "torch.float32"


def _loaded_base_positions() -> int | None:
    base = getattr(loaded_engine(), "base", None)
    return base.max_positions if base is not None else None


@functools.cache
def _config_positions(model: str) -> int | None:
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model, local_files_only=True)
    except Exception:  # noqa: BLE001 - not on this machine (celery web tier): the budget rules
        return None
    return getattr(config.get_text_config(), "max_position_embeddings", None)
