"""Checking an adapter at the door, before anyone can use it (docs/ARCHITECTURE.md, "Adapters").

LoRAX and vLLM users report adapters that silently serve the base model (module names that
match nothing, a different base), adapters that fail on their first request, and `.bin` files
that PEFT opens with `torch.load` (pickle: code execution). `validate_adapter_dir` catches all
of that with a sentence a person can act on. It reads JSON, the safetensors header and then the
tensors through safetensors (to refuse NaN and infinite weights): nothing is unpickled, no code
named by a config is imported, and the base model is built on the meta device (its layer tree,
no weights). Crafted files (deep nesting, NaN, values of the wrong kind, patterns that would
backtrack for ever) get a sentence naming the setting, never a traceback: patterns are matched by
RE2 (`inference.targeting`). `extract_adapter_zip` unpacks an upload without writing outside its
destination. No Django here: the admin and the shell command share it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import stat
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from inference.errors import AdapterError
from inference.targeting import Targeting

if TYPE_CHECKING:
    import torch

# The names inference.adapters uses. That module (and torch, transformers, peft) is imported
# only when a check runs, so that the web tier and manage.py start without them.
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
README_NAME = "README.md"
ADAPTER_FILES = (CONFIG_NAME, WEIGHTS_NAME)
# Weights in a pickle format (torch.save, pickle, joblib): loading them can run code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_CONFIG_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
MAX_JSON_DEPTH = 16  # a LoRA config nests three levels; a safetensors header two

# Settings that change what PEFT does with the shared base model or its code paths. Each is
# refused when set to anything but its neutral value (None, False, {}, []): the batched engine
# applies the plain low-rank delta only, as vLLM and LoRAX do, so any of these would either be
# ignored (answers silently wrong) or touch weights every other request shares.
REFUSED_FEATURES = {
    "auto_mapping": "names a Python class for PEFT to import",
    "megatron_config": "asks PEFT to import Megatron-LM layers",
    "use_dora": "is a DoRA adapter, which Patchbay does not serve (only plain LoRA)",
    "modules_to_save": "replaces whole layers of the base model",
    "trainable_token_indices": "replaces token embeddings of the base model",
    "layer_replication": "duplicates layers of the base model",
    "lora_bias": "adds biases to the base model's layers",
    "alora_invocation_tokens": "is an activated LoRA (aLoRA), which Patchbay does not serve",
    "use_qalora": "is a quantisation-aware LoRA, which Patchbay does not serve",
    "target_parameters": "targets raw parameters instead of layers",
    "arrow_config": "is an Arrow routing adapter, which Patchbay does not serve",
    "monteclora_config": "is a MonteCLoRA adapter, which Patchbay does not serve",
    "velora_config": "is a VeLoRA adapter, which Patchbay does not serve",
    "kasa_config": "is a KaSA adapter, which Patchbay does not serve",
    "use_bdlora": "is a block-diagonal LoRA, which Patchbay does not serve",
    "eva_config": "configures an initialisation that needs training data",
    "corda_config": "configures an initialisation that rewrites the base weights",
    "lora_ga_config": "configures an initialisation that needs training data",
}
# Settings read by the checks below, or plain metadata that changes nothing at load time.
UNDERSTOOD = {
    "peft_type", "task_type", "r", "lora_alpha", "target_modules", "rank_pattern",
    "alpha_pattern", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "init_lora_weights",
    "layers_to_transform", "layers_pattern", "exclude_modules", "inference_mode",
    "base_model_name_or_path", "revision", "peft_version", "ensure_weight_tying",
    "loftq_config",  # only read with init_lora_weights="loftq", which is refused
}
# Defaults PEFT writes for features that are off; harmless at these values.
HARMLESS_DEFAULTS = {"megatron_core": "megatron.core", "qalora_group_size": None}
TASK_TYPES = (None, "CAUSAL_LM")
# Settings the engine needs to know the base model's shape; a differing one means another model.
SHAPE_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "intermediate_size",
    "num_attention_heads", "num_key_value_heads", "vocab_size",
)
LORA_KEY = re.compile(
    r"^base_model\.model\.(?P<module>.+)\.lora_(?P<embedding>embedding_)?(?P<factor>[AB])"
    r"(?:\.weight)?$"
)


@dataclass(frozen=True)
class Limits:
    max_rank: int
    max_bytes: int


@dataclass(frozen=True)
class AdapterReport:
    """What an adapter that passed every check looks like."""

    rank: int  # the largest rank of any of its layers
    modules: int  # how many base-model layers it changes
    size_bytes: int
    trained_on: str  # its base_model_name_or_path, as written in the config
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BaseLayout:
    """The deployment's base model as the checks need it: its config and its layer tree."""

    config: dict
    model: torch.nn.Module  # on the meta device: names and shapes, no memory


def reject(sentence: str) -> AdapterError:
    return AdapterError("invalid_adapter", sentence)


# --- the whole check --------------------------------------------------------------------------


def validate_adapter_dir(path: Path, *, base_model: str, limits: Limits) -> AdapterReport:
    """Every check, in the order an admin would fix them; raise AdapterError on the first."""
    refuse_event_loop_thread()
    path = Path(path)
    check_no_pickle_weights(path)
    check_files_present(path)
    size = check_size(path, limits.max_bytes)
    config = read_config(path)
    targeting = check_config(config, limits)
    tensors = read_safetensors_header(path / WEIGHTS_NAME)
    layout = base_layout(base_model)
    warnings = check_base_model(config, base_model, layout)
    modules = check_targets(config, targeting, layout)
    check_tensors(config, targeting, tensors, modules)
    check_weights_are_finite(path / WEIGHTS_NAME)
    return AdapterReport(
        rank=targeting.max_rank,
        modules=len({name for name in _tensor_modules(tensors)}),
        size_bytes=size,
        trained_on=str(config.get("base_model_name_or_path") or ""),
        warnings=warnings,
    )


def refuse_event_loop_thread() -> None:
    """The checks read every weight and may build the base model's layer tree: seconds of work
    that, on an event loop, would stall every socket and stream it serves. Django runs sync views
    under Daphne in a worker thread; async code must use sync_to_async or asyncio.to_thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop in this thread: the right place
    raise RuntimeError(
        "validate_adapter_dir blocks; call it from a worker thread (sync_to_async, "
        "asyncio.to_thread), not on the event loop."
    )


# --- files ------------------------------------------------------------------------------------


def is_pickle_weights(name: str) -> bool:
    """Weights saved by torch.save or pickle: `adapter_model.bin` and its relatives."""
    return PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES


def check_no_pickle_weights(path: Path) -> None:
    if not path.is_dir():
        return  # check_files_present says so
    for child in sorted(path.iterdir()):
        if child.name.startswith("adapter_model") and is_pickle_weights(child.name):
            raise reject(
                f"{child.name} is a pickle file, which can run code when loaded; Patchbay "
                f"accepts {WEIGHTS_NAME} only. Convert the weights to safetensors and remove "
                f"{child.name}."
            )


def check_files_present(path: Path) -> None:
    if not path.is_dir():
        raise reject(f"{path} is not a directory.")
    for name in ADAPTER_FILES:
        if not (path / name).is_file():
            raise reject(f"The adapter has no {name}; it needs {CONFIG_NAME} and {WEIGHTS_NAME}.")


def check_size(path: Path, max_bytes: int) -> int:
    size = sum((path / name).stat().st_size for name in ADAPTER_FILES)
    if size > max_bytes:
        raise reject(
            f"The adapter's files take {readable_size(size)}; the limit (ADAPTER_MAX_BYTES) is "
            f"{readable_size(max_bytes)}."
        )
    return size


def read_config(path: Path) -> dict:
    config_path = path / CONFIG_NAME
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise reject(f"{CONFIG_NAME} is larger than 1 MiB; a LoRA config is a few kilobytes.")
    try:
        text = config_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise reject(f"{CONFIG_NAME} is not valid JSON: {error}.") from None
    config = strict_json(text, CONFIG_NAME)
    if not isinstance(config, dict):
        raise reject(f"{CONFIG_NAME} must hold a JSON object.")
    return config


def read_safetensors_header(path: Path) -> dict[str, Tensor]:
    """The tensor table of a safetensors file, checked against the file's real size.

    Parsed by hand so that a pickle renamed to .safetensors is named as such, and so that
    nothing but the header is read.
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        if prefix[:1] == b"\x80" or prefix[:2] == b"PK":
            raise reject(
                f"{WEIGHTS_NAME} is a PyTorch pickle file with a safetensors name; pickle files "
                "can run code when loaded. Save the weights with safetensors."
            )
        header_len = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 2 <= header_len <= min(size - 8, MAX_HEADER_BYTES):
            raise reject(f"{WEIGHTS_NAME} is not a safetensors file (its header is damaged).")
        try:
            text = file.read(header_len).decode("utf-8")
        except UnicodeDecodeError:
            raise reject(f"{WEIGHTS_NAME} is not a safetensors file (its header is not JSON).")
    header = strict_json(text, f"The header of {WEIGHTS_NAME}")
    if not isinstance(header, dict):
        raise reject(f"{WEIGHTS_NAME} is not a safetensors file (its header is not a table).")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise reject(f"{WEIGHTS_NAME} is damaged: its __metadata__ must map names to text.")
    return _tensor_table(header, data_bytes=size - 8 - header_len)


def strict_json(text: str, what: str) -> Any:
    """JSON as Python reads it, less what a crafted file uses to break the code after it:
    NaN and Infinity (also written as 1e999), nesting deeper than MAX_JSON_DEPTH."""

    def no_constants(name: str):
        raise reject(f"{what} holds {name}; numbers must be finite.")

    try:
        value = json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise reject(f"{what} is nested too deeply.") from None
    except ValueError as error:  # JSONDecodeError, and integers past Python's 4300 digits
        raise reject(f"{what} is not valid JSON: {error}.") from None
    _check_json_tree(value, what)
    return value


def _check_json_tree(value: Any, what: str) -> None:
    """Walked without recursion, so a crafted depth cannot blow the stack here either."""
    pending = [(value, 1, "")]
    while pending:
        item, depth, where = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise reject(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep.")
        if isinstance(item, float) and not math.isfinite(item):
            raise reject(f"{what} holds a number too large to be finite at {where or 'top'}.")
        if isinstance(item, dict):
            pending.extend((v, depth + 1, f"{where}.{k}".lstrip(".")) for k, v in item.items())
        elif isinstance(item, list):
            pending.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(item))


def _tensor_table(header: dict, *, data_bytes: int) -> dict[str, Tensor]:
    tensors, spans = {}, []
    for name, entry in header.items():
        tensor, span = _tensor_entry(name, entry)
        tensors[name] = tensor
        spans.append(span)
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise reject(f"{WEIGHTS_NAME} is damaged: its tensors overlap or leave gaps.")
        end = stop
    if end != data_bytes:
        raise reject(f"{WEIGHTS_NAME} is damaged: its size does not match its header.")
    if not tensors:
        raise reject(f"{WEIGHTS_NAME} holds no tensors.")
    return tensors


def _tensor_entry(name: str, entry: Any) -> tuple[Tensor, tuple[int, int]]:
    malformed = reject(f"{WEIGHTS_NAME} is damaged: the entry for {name} is malformed.")
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        raise malformed
    dtype, shape, offsets = entry["dtype"], entry.get("shape"), entry.get("data_offsets")
    if not (_whole_numbers(shape) and _whole_numbers(offsets) and len(offsets) == 2):
        raise malformed
    shape, (begin, stop) = tuple(shape), offsets
    if dtype not in DTYPE_BYTES:
        raise reject(
            f"Tensor {name} is stored as {dtype}; Patchbay accepts float32, float16, bfloat16 "
            "and float64 adapter weights."
        )
    if min(shape, default=0) < 0 or stop - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise reject(f"{WEIGHTS_NAME} is damaged: tensor {name} has the wrong number of bytes.")
    return Tensor(dtype, shape), (begin, stop)


def _whole_numbers(value: Any) -> bool:
    """A JSON list of non-negative integers (true, 2.5 and 1e999 are not)."""
    return isinstance(value, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    )


# --- the config -------------------------------------------------------------------------------


def check_config(config: dict, limits: Limits) -> Targeting:
    """The config's settings, each of the kind PEFT expects; its targeting, compiled (RE2)."""
    # The engine's own load-time policy (inference.adapters), in the admin's words.
    from inference.adapters import SHARED_BASE_SAFE_INITS

    if config.get("peft_type") != "LORA":
        raise reject(
            f"This is not a LoRA adapter (peft_type is {_short(config.get('peft_type'))}); "
            "Patchbay serves LoRA adapters only."
        )
    if config.get("init_lora_weights", True) not in SHARED_BASE_SAFE_INITS:
        raise reject(
            f"The adapter uses init_lora_weights={_short(config['init_lora_weights'])}, which "
            "changes the base weights every user shares; convert it to a plain LoRA adapter first."
        )
    for key, value in config.items():
        _check_setting(key, value)
    if config.get("task_type") not in TASK_TYPES:
        raise reject(
            f"The adapter was trained for task {_short(config.get('task_type'))}; Patchbay "
            "serves causal language models (CAUSAL_LM)."
        )
    if config.get("bias", "none") != "none":
        raise reject(
            f"The adapter trains the base model's biases (bias={_short(config['bias'])}), which "
            "would change them for every user; retrain it with bias=\"none\"."
        )
    _check_kinds(config)
    targeting = Targeting.from_config(config)
    if targeting.max_rank > limits.max_rank:
        raise reject(
            f"The adapter has rank {targeting.max_rank}; this server accepts ranks up to "
            f"{limits.max_rank} (ADAPTER_MAX_RANK)."
        )
    return targeting


# Understood settings PEFT reads as one kind of value; targeting ones are checked by Targeting.
TEXT_SETTINGS = ("base_model_name_or_path", "revision", "peft_version")
FLAG_SETTINGS = ("use_rslora", "fan_in_fan_out", "inference_mode", "ensure_weight_tying")


def _check_kinds(config: dict) -> None:
    for key in TEXT_SETTINGS:
        if not isinstance(config.get(key), (str, type(None))):
            raise reject(f"{key} must be text, not {_short(config[key])}.")
    for key in FLAG_SETTINGS:
        if not isinstance(config.get(key), (bool, type(None))):
            raise reject(f"{key} must be true or false, not {_short(config[key])}.")
    dropout = config.get("lora_dropout")
    if dropout is not None and not (
        isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout <= 1
    ):
        raise reject(f"lora_dropout must be a number from 0 to 1, not {_short(dropout)}.")


def _short(value: Any) -> str:
    """A crafted value in a sentence: quoted, and cut short if long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_setting(key: str, value: Any) -> None:
    if key in UNDERSTOOD or _is_neutral(value):
        return
    if key in HARMLESS_DEFAULTS and HARMLESS_DEFAULTS[key] in (value, None):
        return
    if key in REFUSED_FEATURES:
        raise reject(f"{CONFIG_NAME} sets {key}: the adapter {REFUSED_FEATURES[key]}.")
    raise reject(
        f"{CONFIG_NAME} sets {_short(key)}, which Patchbay does not know; it accepts only "
        "settings it knows to be safe. Remove the setting or convert the adapter to a plain "
        "LoRA adapter."
    )


def _is_neutral(value: Any) -> bool:
    return value is None or value is False or value == {} or value == [] or value == ""


# --- the base model ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def base_layout(base_model: str) -> BaseLayout:
    """The base model's config and layer tree, built on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(base_model, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except Exception as error:  # transformers raises many types for a missing or odd model
        raise AdapterError(
            "base_unavailable",
            f"The deployment's base model ({base_model}) could not be read to check the "
            f"adapter against it: {error}",
        ) from error
    return BaseLayout(config=config.to_dict(), model=model)


def check_base_model(config: dict, base_model: str, layout: BaseLayout) -> tuple[str, ...]:
    """Refuse an adapter whose named base has another shape; a different name alone is a warning.

    The layer and tensor checks that follow are what prove the adapter fits; the name is only a
    hint (the same model lives under many paths and hub ids).
    """
    trained_on = config.get("base_model_name_or_path")
    if not trained_on or _same_model(trained_on, base_model):
        return ()
    theirs = _local_model_config(trained_on)
    if theirs is not None:
        ours = layout.config
        differences = [
            f"{key} {theirs.get(key)} instead of {ours.get(key)}"
            for key in SHAPE_KEYS
            if theirs.get(key) != ours.get(key)
        ]
        if differences:
            raise reject(
                f"The adapter was trained for another base model ({trained_on}: "
                f"{', '.join(differences)})."
            )
    return (
        f"The adapter names {trained_on} as its base model, while this server runs "
        f"{base_model}. Its layers and shapes fit, so it will load; check that it was trained "
        "on this model.",
    )


def _same_model(one: str, other: str) -> bool:
    if one == other:
        return True
    try:
        return Path(one).resolve() == Path(other).resolve()
    except (OSError, ValueError):  # ValueError: a NUL character in the name
        return False


def _local_model_config(name: str) -> dict | None:
    """The config.json of a base model named by a local directory, when it is readable."""
    try:
        config = json.loads((Path(name) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


# --- layers and tensors -----------------------------------------------------------------------


def check_targets(
    config: dict, targeting: Targeting, layout: BaseLayout
) -> dict[str, torch.nn.Module]:
    """The base layers the config targets (PEFT's rules, on RE2); every named target must exist."""
    import torch

    layers = {
        name: module
        for name, module in layout.model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding))
    }
    chosen = {name: layers[name] for name in targeting.targeted(layers)}
    targets = config["target_modules"]
    if isinstance(targets, str):
        if not chosen:
            raise reject(f"target_modules {_short(targets)} matches no layer of the base model.")
        return chosen
    missing = [t for t in targets if not any(_ends_with(name, t) for name in layers)]
    if missing:
        raise reject(
            f"The base model has no layer called {', '.join(missing)}; the adapter was trained "
            "for another architecture, or its target_modules are misspelt."
        )
    return chosen


def check_tensors(
    config: dict, targeting: Targeting, tensors: dict[str, Tensor],
    targeted: dict[str, torch.nn.Module],
) -> None:
    """Each tensor is a LoRA factor of a targeted layer with the shape the config promises."""
    factors: dict[str, set[str]] = {}
    for key, tensor in tensors.items():
        match = LORA_KEY.match(key)
        if match is None:
            raise reject(f"{WEIGHTS_NAME} holds {_short(key)}, which is not a LoRA weight.")
        module = match["module"]
        if module not in targeted:
            raise reject(
                f"{WEIGHTS_NAME} has weights for {module}, which is not a layer the adapter's "
                "target_modules name in this base model; PEFT would silently ignore them."
            )
        rank = targeting.rank_of(module)
        _check_factor_shape(key, tensor, targeted[module], match["factor"], rank)
        factors.setdefault(module, set()).add(match["factor"])
    half = [module for module, found in factors.items() if found != {"A", "B"}]
    if half:
        raise reject(f"{WEIGHTS_NAME} has only one of the two LoRA factors for {half[0]}.")
    _check_every_target_has_weights(config, factors)


def check_weights_are_finite(path: Path) -> None:
    """NaN or infinite weights pass every shape check and then blank every answer."""
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as weights:
            for key in weights.keys():
                if not torch.isfinite(weights.get_tensor(key)).all():
                    raise reject(
                        f"Tensor {key} holds NaN or infinite values; the adapter would give "
                        "empty or garbled answers. Retrain it or export it again."
                    )
    except (SafetensorError, OSError, ValueError) as error:
        raise reject(f"{WEIGHTS_NAME} could not be read: {error}.") from None


def _check_factor_shape(
    key: str, tensor: Tensor, module: torch.nn.Module, factor: str, rank: int
) -> None:
    if hasattr(module, "num_embeddings"):
        fan_in, fan_out = module.num_embeddings, module.embedding_dim
    else:
        fan_in, fan_out = module.in_features, module.out_features
    # lora_A is (rank, in), lora_B is (out, rank).
    expected = (rank, fan_in) if factor == "A" else (fan_out, rank)
    if tensor.shape != expected:
        raise reject(
            f"Tensor {key} has shape {list(tensor.shape)}; this base model and the config "
            f"(rank {rank}) need {list(expected)}. The adapter was trained for another base "
            "model or its config does not match its weights."
        )


def _check_every_target_has_weights(config: dict, factors: dict[str, set[str]]) -> None:
    """A target without weights would leave those layers as the base model has them."""
    targets = config["target_modules"]
    names = [targets] if isinstance(targets, str) else targets
    for target in names:
        if isinstance(targets, str):
            found = bool(factors)
        else:
            found = any(_ends_with(module, target) for module in factors)
        if not found:
            raise reject(
                f"The config targets {target}, but {WEIGHTS_NAME} has no weights for it; "
                "those layers would silently run as the base model."
            )


def _tensor_modules(tensors: dict[str, Tensor]):
    for key in tensors:
        match = LORA_KEY.match(key)
        if match:
            yield match["module"]


def _ends_with(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


# --- zip archives -----------------------------------------------------------------------------


def extract_adapter_zip(archive: Path, dest: Path, *, max_bytes: int) -> None:
    """Unpack the adapter files of an archive into `dest`, refusing anything unsafe.

    Every entry is checked before anything is written: absolute paths, `..` and links are
    refused outright, pickle weights are refused, other files (tokenizers, READMEs of other
    names) are ignored. Only the adapter's own files are written, under fixed names in `dest`.
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            chosen = _chosen_entries(zipped.infolist(), max_bytes)
            for name, info in chosen.items():
                _extract_bounded(zipped, info, dest / name, max_bytes)
    except zipfile.BadZipFile:
        raise reject("The upload is not a valid zip archive.") from None


def _chosen_entries(entries: list[zipfile.ZipInfo], max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    chosen: dict[str, zipfile.ZipInfo] = {}
    for info in entries:
        _check_entry_is_safe(info)
        name = PurePosixPath(info.filename).name
        if info.is_dir():
            continue
        if name.startswith("adapter_model") and is_pickle_weights(name):
            raise reject(
                f"The archive holds {info.filename}, a pickle file, which can run code when "
                f"loaded; Patchbay accepts {WEIGHTS_NAME} only."
            )
        if name in (*ADAPTER_FILES, README_NAME):
            if name in chosen:
                raise reject(f"The archive holds more than one {name}.")
            chosen[name] = info
    declared = sum(info.file_size for info in chosen.values())
    if declared > max_bytes:
        raise reject(
            f"The archive's adapter files take {readable_size(declared)}; the limit "
            f"(ADAPTER_MAX_BYTES) is {readable_size(max_bytes)}."
        )
    return chosen


def _check_entry_is_safe(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise reject(f"The archive entry {name} has an absolute path; nothing was unpacked.")
    if ".." in parts:
        raise reject(
            f"The archive entry {name} points outside the archive (..); nothing was unpacked."
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise reject(f"The archive entry {name} is a link; nothing was unpacked.")


def _extract_bounded(
    zipped: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int
) -> None:
    """Copy one entry, counting real bytes: a zip's declared sizes can lie."""
    written = 0
    with zipped.open(info) as source, target.open("xb") as out:
        while chunk := source.read(1024 * 1024):
            written += len(chunk)
            if written > limit:
                raise reject(
                    f"{info.filename} unpacks to more than the limit (ADAPTER_MAX_BYTES) of "
                    f"{readable_size(limit)}."
                )
            out.write(chunk)


def readable_size(count: int) -> str:
    """1536 -> "1.5 KiB": sizes in messages a person reads."""
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}"
