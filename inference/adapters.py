"""Attaching LoRA adapters to the one shared base model, and switching between them per request.

As in vLLM's `vllm/lora/`, an `AdapterRef` (inference.types) only names an adapter; this module
checks its files before PEFT sees them, loads it once, and activates it for each forward pass.
Only safetensors weights are read: a pickle file (`adapter_model.bin`) can run code when loaded.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open

from inference.errors import AdapterError
from inference.types import AdapterRef

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")

# Other initialisations (PiSSA, OLoRA, LoftQ, CorDA...) rewrite the base weights while the
# adapter is attached, which would change every other request's answers on the shared base.
SHARED_BASE_SAFE_INITS = (True, False, "gaussian")

logger = logging.getLogger(__name__)

LORA_WEIGHT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")


class LoadedAdapters:
    """The adapters attached to the base model. Not thread-safe: the engine thread owns it."""

    def __init__(self, base: torch.nn.Module, device: torch.device):
        self._base = base
        self._device = device
        self._peft: PeftModel | None = None  # wraps `base` once the first adapter arrives
        self._names: dict[AdapterRef, str] = {}  # our reference -> PEFT's adapter name
        self._counter = itertools.count()

    def load(self, ref: AdapterRef) -> None:
        """Attach the adapter unless it already is; raise AdapterError when it cannot be used."""
        if ref in self._names:
            return
        path = Path(ref.path)
        check_adapter_files(ref)
        check_adapter_config(ref)
        check_weights_fit(self._base, ref)
        # PEFT adapter names become module keys, so they must not contain dots; never reuse one,
        # in case a failed load left its name behind.
        peft_name = f"adapter_{next(self._counter)}"
        try:
            self._attach(path, peft_name)
        except Exception as error:
            self._discard(peft_name)
            raise AdapterError(
                "invalid_adapter", f"The adapter {ref.name!r} could not be loaded: {error}"
            ) from error
        self._names[ref] = peft_name

    @contextmanager
    def activated(self, ref: AdapterRef | None) -> Iterator[torch.nn.Module]:
        """Yield the model to run with this adapter switched on (None: the plain base model)."""
        if ref is None and self._peft is None:
            yield self._base
        elif ref is None:
            with self._peft.disable_adapter():
                yield self._peft
        else:
            self.load(ref)
            name = self._names[ref]
            if self._peft.active_adapter != name:
                self._peft.set_adapter(name, inference_mode=True)
            yield self._peft

    def _attach(self, path: Path, peft_name: str) -> None:
        device = str(self._device)
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(
                self._base, path, adapter_name=peft_name, torch_device=device
            )
        else:
            self._peft.load_adapter(path, adapter_name=peft_name, torch_device=device)
        self._peft.eval()

    def _discard(self, peft_name: str) -> None:
        """Remove what a failed load left behind, without hiding why it failed."""
        try:
            if self._peft is not None and peft_name in self._peft.peft_config:
                self._peft.delete_adapter(peft_name)
        except Exception:
            logger.exception("Could not remove the half-loaded adapter %s", peft_name)


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


def check_adapter_config(ref: AdapterRef) -> None:
    """Read adapter_config.json ourselves, so a bad file gives a clear message, not a traceback."""
    try:
        config = json.loads((Path(ref.path) / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise AdapterError(
            "invalid_adapter", f"The adapter {ref.name!r} has an unreadable {CONFIG_NAME}: {error}"
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


def check_weights_fit(base: torch.nn.Module, ref: AdapterRef) -> None:
    """Compare the weight shapes (read from the file header only) with the base model's layers.

    An adapter trained for another base model is the common mistake. Catching it here, before
    PEFT starts wrapping layers, leaves the shared base model untouched.
    """
    try:
        with safe_open(Path(ref.path) / WEIGHTS_NAME, framework="pt") as weights:
            shapes = {key: weights.get_slice(key).get_shape() for key in weights.keys()}
    except Exception as error:  # safetensors raises its own error type for a damaged file
        raise AdapterError(
            "invalid_adapter", f"The adapter {ref.name!r} has an unreadable {WEIGHTS_NAME}: {error}"
        ) from error
    for key, shape in shapes.items():
        match = LORA_WEIGHT_KEY.match(key)
        if match:
            _check_factor_fits(base, ref, match["module"], match["factor"], shape)


def _check_factor_fits(
    base: torch.nn.Module, ref: AdapterRef, module_name: str, factor: str, shape: list[int]
) -> None:
    mismatch = f"The adapter {ref.name!r} was not trained for this base model"
    try:
        module = base.get_submodule(module_name)
    except AttributeError:
        raise AdapterError(
            "invalid_adapter", f"{mismatch}: it has no layer {module_name}."
        ) from None
    # lora_A is (rank, in_features), lora_B is (out_features, rank).
    expected = getattr(module, "in_features" if factor == "A" else "out_features", None)
    actual = shape[1] if factor == "A" else shape[0]
    if expected is not None and len(shape) == 2 and actual != expected:
        raise AdapterError(
            "invalid_adapter",
            f"{mismatch}: layer {module_name} has {expected} features, "
            f"the adapter expects {actual}.",
        )
