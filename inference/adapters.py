"""Reading a LoRA adapter from disk and checking it against the base model.

As in vLLM's `vllm/lora/`, an `AdapterRef` (inference.types) only names an adapter; this module
turns its directory into per-layer LoRA factors, and `inference.adapter_cache` keeps them.
Only safetensors weights are read: a pickle file (`adapter_model.bin`) can run code when loaded.
Every problem becomes an `AdapterError` with a sentence that says what is wrong. The config's
patterns are matched by RE2 (`inference.targeting`), never by `re`: this runs on the engine
thread, where a pattern that backtracked for ever would stop every answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from inference.errors import AdapterError
from inference.targeting import Targeting
from inference.types import AdapterRef

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")

# Other initialisations (PiSSA, OLoRA, LoftQ, CorDA...) rewrite the base weights while the
# adapter is attached, which would change every other request's answers on the shared base.
SHARED_BASE_SAFE_INITS = (True, False, "gaussian")

LORA_WEIGHT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")

# Looks up a base layer by module name: the Linear, or None when the model has no such layer.
LayerLookup = Callable[[str], "torch.nn.Module | None"]


@dataclass(frozen=True)
class AdapterWeights:
    """One adapter, ready for the batched layers: per module, a [rank, in] and a scaled
    [out, rank] factor."""

    ref: AdapterRef
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rank: int  # the largest rank of any module
    nbytes: int


def read_adapter(
    ref: AdapterRef,
    *,
    layer: LayerLookup,
    linear_names: list[str],
    max_rank: int,
    dtype: torch.dtype,
    device: torch.device,
) -> AdapterWeights:
    """Load and check an adapter; raise AdapterError when this base model cannot use it."""
    check_adapter_files(ref)
    config = check_adapter_config(ref)
    targeting = _targeting(ref, config)
    _check_targets_exist(ref, config, targeting, linear_names)
    tensors = _read_tensors(ref)
    factors = {}
    for module, (a, b) in _pair_factors(ref, tensors).items():
        _check_shapes(ref, module, a, b, layer(module), max_rank)
        scale = _scaling(config, targeting, module, a.shape[0])
        pair = (
            a.to(device=device, dtype=dtype),
            (b.float() * scale).to(device=device, dtype=dtype),
        )
        _check_finite(ref, module, pair)
        factors[module] = pair
    if not factors:
        raise AdapterError("invalid_adapter", f"The adapter {ref.name!r} has no LoRA weights.")
    rank = max(a.shape[0] for a, _ in factors.values())
    nbytes = sum(t.numel() * t.element_size() for pair in factors.values() for t in pair)
    return AdapterWeights(ref, factors, rank, nbytes)


def check_adapter_files(ref: AdapterRef) -> None:
    path = Path(ref.path)
    if not path.is_dir():
        raise AdapterError("unknown_adapter", f"The adapter {ref.name!r} is not on this server.")
    if not (path / CONFIG_NAME).is_file():
        raise AdapterError(
            "unknown_adapter",
            f"The adapter {ref.name!r} has no {CONFIG_NAME}, so it cannot be used.",
        )
    if (path / WEIGHTS_NAME).is_file():
        return
    if any((path / name).exists() for name in PICKLE_WEIGHTS):
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} has pickle weights only; "
            f"Patchbay loads {WEIGHTS_NAME} files only, because pickle files can run code.",
        )
    raise AdapterError("unknown_adapter", f"The adapter {ref.name!r} has no {WEIGHTS_NAME} file.")


def check_adapter_config(ref: AdapterRef) -> dict:
    """Read adapter_config.json ourselves, so a bad file gives a clear message, not a traceback."""
    from inference.validation import strict_json

    try:
        config = strict_json((Path(ref.path) / CONFIG_NAME).read_text(), CONFIG_NAME)
    except (OSError, UnicodeDecodeError, AdapterError) as error:
        reason = error.message if isinstance(error, AdapterError) else error
        raise AdapterError(
            "invalid_adapter", f"The adapter {ref.name!r} has an unreadable {CONFIG_NAME}: {reason}"
        ) from error
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AdapterError("invalid_adapter", f"The adapter {ref.name!r} is not a LoRA adapter.")
    if config.get("init_lora_weights", True) not in SHARED_BASE_SAFE_INITS:
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} uses init_lora_weights={config['init_lora_weights']!r}, "
            "which changes the base weights; convert it to a plain LoRA adapter first.",
        )
    if config.get("layer_replication"):
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} replicates layers, which a shared base model cannot do.",
        )
    for key, refusal in UNSUPPORTED_OPTIONS.items():
        if config.get(key):
            raise AdapterError("invalid_adapter", f"The adapter {ref.name!r} uses {key}, {refusal}.")
    return config


# Options that change more than the low-rank product, so a shared base cannot serve them.
UNSUPPORTED_OPTIONS = {
    "use_dora": "which Patchbay does not serve yet; merge it or retrain as plain LoRA",
    "modules_to_save": "which replaces whole layers of the shared base model",
    "trainable_token_indices": "which changes the shared embeddings",
    "lora_bias": "which adds a bias Patchbay does not serve",
}


def _targeting(ref: AdapterRef, config: dict) -> Targeting:
    try:
        return Targeting.from_config(config)
    except AdapterError as error:
        raise AdapterError(
            "invalid_adapter", f"The adapter {ref.name!r} cannot be used: {error.message}"
        ) from None


def _check_targets_exist(
    ref: AdapterRef, config: dict, targeting: Targeting, linear_names: list[str]
) -> None:
    targets = config["target_modules"]
    if isinstance(targets, str):
        missing = [] if targeting.targeted(linear_names) else [targets]
    else:
        suffixes = {name.rsplit(".", 1)[-1] for name in linear_names}
        missing = [t for t in targets if t not in suffixes and t not in linear_names]
    if missing:
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} was not trained for this base model: it targets "
            f"{', '.join(map(str, missing))}, which this model does not have as linear layers.",
        )


def _read_tensors(ref: AdapterRef) -> dict[str, torch.Tensor]:
    try:
        return load_file(Path(ref.path) / WEIGHTS_NAME, device="cpu")
    except (OSError, SafetensorError, ValueError) as error:
        raise AdapterError(
            "invalid_adapter", f"The adapter {ref.name!r} has an unreadable {WEIGHTS_NAME}: {error}"
        ) from error


def _pair_factors(ref: AdapterRef, tensors: dict[str, torch.Tensor]) -> dict[str, tuple]:
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = LORA_WEIGHT_KEY.match(key)
        if not match:
            raise AdapterError(
                "invalid_adapter",
                f"The adapter {ref.name!r} has a weight Patchbay cannot serve: {key}.",
            )
        pairs.setdefault(match["module"], {})[match["factor"]] = tensor
    incomplete = [module for module, pair in pairs.items() if len(pair) != 2]
    if incomplete:
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} lacks lora_A or lora_B for {incomplete[0]}.",
        )
    return {module: (pair["A"], pair["B"]) for module, pair in pairs.items()}


def _check_shapes(
    ref: AdapterRef, module: str, a: torch.Tensor, b: torch.Tensor, base, max_rank: int
) -> None:
    mismatch = f"The adapter {ref.name!r} was not trained for this base model"
    if base is None or not isinstance(base, torch.nn.Linear):
        raise AdapterError("invalid_adapter", f"{mismatch}: it has no linear layer {module}.")
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
        raise AdapterError(
            "invalid_adapter", f"The adapter {ref.name!r} has malformed factors for {module}."
        )
    # lora_A is (rank, in_features), lora_B is (out_features, rank).
    if a.shape[1] != base.in_features or b.shape[0] != base.out_features:
        raise AdapterError(
            "invalid_adapter",
            f"{mismatch}: layer {module} maps {base.in_features} to {base.out_features} "
            f"features, the adapter expects {a.shape[1]} to {b.shape[0]}.",
        )
    if a.shape[0] > max_rank:
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} has rank {a.shape[0]} at {module}; this server takes "
            f"ranks up to {max_rank} (ADAPTER_MAX_RANK).",
        )


def _scaling(config: dict, targeting: Targeting, module: str, rank: int) -> float:
    """PEFT's scaling: lora_alpha / r, or / sqrt(r) with rsLoRA; alpha_pattern may override."""
    alpha = targeting.alpha_of(module)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _check_finite(ref: AdapterRef, module: str, pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    """NaN or infinite factors (in the file, or from a scaling too large for the dtype) would
    blank every answer of every row that uses the adapter."""
    if not all(torch.isfinite(factor).all() for factor in pair):
        raise AdapterError(
            "invalid_adapter",
            f"The adapter {ref.name!r} has NaN or infinite weights at {module} once scaled by "
            "its lora_alpha; it would give empty or garbled answers.",
        )
