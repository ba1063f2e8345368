"""Which base-model layers a LoRA config changes, with which rank and alpha: PEFT's rules on RE2.

See docs/ARCHITECTURE.md, "The checks". PEFT reads five settings as Python regular expressions
(`target_modules` and `exclude_modules` when they are strings, `layers_pattern`, and the keys of
`rank_pattern` and `alpha_pattern`) and matches them with `re`, whose backtracking can take
exponential time while holding the GIL: one crafted adapter froze every request of the server.
Here PEFT's own rules (peft 0.21: `check_target_module_exists` in tuners/tuners_utils.py,
`match_target_against_key` and `get_pattern_key` in utils/other.py) run on RE2, which matches in
time linear in the name and refuses what it cannot match that way (look-around,
back-references). `peft_safe_config` hands PEFT the outcome as escaped literal module names, so
PEFT's `re` never runs an adapter's own pattern. No Django here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import re2

from inference.errors import AdapterError

# RE2's memory for one compiled pattern; a larger one is refused. A list of a few hundred full
# module names fits many times over.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # its errors become our sentences, not lines on stderr
_OPTIONS.max_mem = 4 << 20
MAX_PATTERN_CHARS = 64 * 1024
MAX_ENTRIES = 4096  # names in target_modules / exclude_modules, keys of a pattern mapping
MAX_ALPHA = 1e6  # |lora_alpha|: real adapters use up to a few thousand


def refuse(sentence: str) -> AdapterError:
    return AdapterError("invalid_adapter", sentence)


def compile_pattern(field: str, pattern: str, peft_form: str | None = None):
    """RE2 for what PEFT compiles with `re`: `peft_form` wraps the setting as PEFT does ("{}")."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise refuse(f"{field} is a pattern of {len(pattern)} characters; the limit is "
                     f"{MAX_PATTERN_CHARS}.")
    text = (peft_form or "{}").replace("{}", pattern)
    try:
        compiled = re2.compile(text, _OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args else "not valid"
        raise refuse(
            f"{field} {_short(pattern)} is a pattern Patchbay cannot match safely ({reason}). "
            "Patterns may not use look-ahead, look-behind or back-references, nor repeat more "
            "than 1000 times; list the layer names instead."
        ) from None
    try:
        re.compile(text)  # PEFT will compile it with Python's re; compiling never backtracks
    except re.error as error:
        raise refuse(f"{field} {_short(pattern)} is not a valid pattern: {error}.") from None
    return compiled


@dataclass(frozen=True)
class _Keyed:
    """One rank_pattern / alpha_pattern entry: PEFT matches `(.*\\.)?(key)$` from the start."""

    key: str
    pattern: Any
    value: int | float


@dataclass(frozen=True)
class Targeting:
    """The targeting settings of one adapter config, checked and compiled once."""

    targets: Any  # a compiled pattern (fullmatch) or a tuple of names / name suffixes
    excluded: Any  # the same, or None
    layers: tuple[int, ...] | None  # layers_to_transform, applied to listed targets only
    layer_patterns: tuple[Any, ...] | None  # compiled from layers_pattern
    r: int
    ranks: tuple[_Keyed, ...]
    lora_alpha: int | float
    alphas: tuple[_Keyed, ...]

    @classmethod
    def from_config(cls, config: dict) -> Targeting:
        """Raise AdapterError naming the setting when one is of the wrong kind or unsafe."""
        targets = _names_or_pattern("target_modules", config.get("target_modules"), required=True)
        layers = _layer_indexes(config.get("layers_to_transform"))
        layer_patterns = _layer_patterns(config.get("layers_pattern"))
        if not isinstance(targets, tuple) and (layers is not None or layer_patterns is not None):
            raise refuse("layers_to_transform and layers_pattern cannot be used when "
                         "target_modules is a pattern (PEFT refuses that too).")
        if layer_patterns and layers is None:
            raise refuse("layers_pattern is set without layers_to_transform (PEFT refuses that "
                         "too).")
        r = _rank("r", config.get("r"))
        lora_alpha = _alpha("lora_alpha", config.get("lora_alpha", 8))
        return cls(
            targets=targets,
            excluded=_names_or_pattern("exclude_modules", config.get("exclude_modules")),
            layers=layers,
            layer_patterns=layer_patterns,
            r=r,
            ranks=_keyed("rank_pattern", config.get("rank_pattern"), _rank),
            lora_alpha=lora_alpha,
            alphas=_keyed("alpha_pattern", config.get("alpha_pattern"), _alpha),
        )

    # --- PEFT's rules -------------------------------------------------------------------------

    def targets_module(self, name: str) -> bool:
        """`check_target_module_exists`: excluded first, then the targets, then the layers."""
        if self.excluded is not None and _name_matches(self.excluded, name):
            return False
        if not isinstance(self.targets, tuple):
            return self.targets.fullmatch(name) is not None
        if name in self.targets:
            return True  # PEFT checks the layer indexes only for suffix matches
        if not any(name.endswith("." + target) for target in self.targets):
            return False
        return self.layers is None or self._layer_index(name) in self.layers

    def _layer_index(self, name: str) -> int | None:
        if not self.layer_patterns:
            match = _ANY_LAYER.match(name)
        else:
            for pattern in self.layer_patterns:
                match = pattern.match(name)
                if match is not None:
                    break
        return int(match.group("idx")) if match else None

    def rank_of(self, name: str) -> int:
        return _pattern_value(self.ranks, name, self.r)

    def alpha_of(self, name: str) -> int | float:
        return _pattern_value(self.alphas, name, self.lora_alpha)

    def targeted(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name and self.targets_module(name)]

    @property
    def max_rank(self) -> int:
        return max([self.r, *(entry.value for entry in self.ranks)])


# PEFT's default layer-index rule: the first numbered segment ("model.layers.3.mlp" -> 3).
_ANY_LAYER = re2.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.", _OPTIONS)


def _pattern_value(entries: tuple[_Keyed, ...], name: str, default):
    """`get_pattern_key`, then `dict.get(key, default)`: the first key that matches the end of
    the name; failing that, a key equal to the whole name."""
    for entry in entries:
        if entry.pattern.match(name):
            return entry.value
    for entry in entries:
        if entry.key == name:
            return entry.value
    return default


def _name_matches(names_or_pattern, name: str) -> bool:
    if isinstance(names_or_pattern, tuple):
        return name in names_or_pattern or any(name.endswith("." + n) for n in names_or_pattern)
    return names_or_pattern.fullmatch(name) is not None


# --- each setting, checked -------------------------------------------------------------------


def _names_or_pattern(field: str, value: Any, *, required: bool = False):
    if value is None or (not required and value in ("", [])):
        if required:
            raise refuse(f"{field} must name the layers the adapter changes.")
        return None
    if isinstance(value, str):
        if not value:
            raise refuse(f"{field} must name the layers the adapter changes.")
        return compile_pattern(field, value)
    if not isinstance(value, list) or not value:
        raise refuse(f"{field} must be a pattern or a list of layer names, not "
                     f"{_kind(value)}.")
    if len(value) > MAX_ENTRIES:
        raise refuse(f"{field} lists {len(value)} names; the limit is {MAX_ENTRIES}.")
    for item in value:
        if not isinstance(item, str) or not item:
            raise refuse(f"{field} must list layer names as text; it holds {_short(item)}.")
    return tuple(value)


def _layer_indexes(value: Any) -> tuple[int, ...] | None:
    if value is None or value == []:
        return None  # PEFT: an empty list means every layer
    items = [value] if _is_int(value) else value
    if not isinstance(items, list) or not all(_is_int(i) and 0 <= i < 2**31 for i in items):
        raise refuse("layers_to_transform must be a layer number or a list of layer numbers.")
    return tuple(items)


def _layer_patterns(value: Any) -> tuple[Any, ...] | None:
    if value is None or value == "" or value == []:
        return None  # PEFT: an empty layers_pattern means "any layer"
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise refuse("layers_pattern must be the name of the layer list or a list of names.")
    return tuple(
        compile_pattern("layers_pattern", item, r"(?:^|.*?\.){}\.(?P<idx>\d+)\.") for item in items
    )


def _keyed(field: str, value: Any, check) -> tuple[_Keyed, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise refuse(f"{field} must map layer names to values, not {_kind(value)}.")
    if len(value) > MAX_ENTRIES:
        raise refuse(f"{field} has {len(value)} entries; the limit is {MAX_ENTRIES}.")
    return tuple(
        _Keyed(key, compile_pattern(f"{field} key", key, r"(.*\.)?({})$"),
               check(f"{field}[{_short(key)}]", item))
        for key, item in value.items()
    )


def _rank(field: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise refuse(f"The rank ({field}) must be a positive whole number, not {_short(value)}.")
    return value


def _alpha(field: str, value: Any) -> int | float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise refuse(f"{field} must be a number, not {_short(value)}.")
    if abs(value) > MAX_ALPHA or not math.isfinite(value):  # abs first: 10**400 is an int
        raise refuse(f"{field} is {_short(value)}; it must be a finite number of size at most "
                     f"{MAX_ALPHA:,.0f}.")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), _short(value)
    )


def _short(value: Any) -> str:
    """A crafted value in a sentence: quoted, and cut short if long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- what PEFT is given ----------------------------------------------------------------------


def peft_safe_config(config: dict, module_names: Iterable[str]) -> dict:
    """The config with every pattern resolved, by RE2, to escaped literal module names.

    PEFT builds the same adapter from it as from the original (same layers, same ranks and
    alphas) but compiles only literals, which `re` matches without backtracking. Targets become
    one fullmatch alternation; each rank/alpha key is one full name, longest first, so that
    PEFT's first-match rule picks each module's own key.
    """
    targeting = Targeting.from_config(config)
    targeted = targeting.targeted(module_names)
    safe = {**config, "exclude_modules": None, "layers_to_transform": None, "layers_pattern": None}
    safe["target_modules"] = "(?:" + "|".join(re.escape(name) for name in sorted(targeted)) + ")"
    by_length = sorted(targeted, key=lambda name: (-len(name), name))
    if targeting.ranks:
        safe["rank_pattern"] = {re.escape(n): targeting.rank_of(n) for n in by_length}
    if targeting.alphas:
        safe["alpha_pattern"] = {re.escape(n): targeting.alpha_of(n) for n in by_length}
    return safe


def peft_lora_config(adapter_dir, module_names: Iterable[str]):
    """PEFT's LoraConfig for an adapter folder, from `peft_safe_config`: give it to
    `PeftModel.from_pretrained(config=...)` or `add_adapter` so that PEFT never compiles the
    adapter's own patterns. `module_names`: those of the model PEFT wraps."""
    import dataclasses
    from pathlib import Path

    from peft import LoraConfig

    from inference.validation import CONFIG_NAME, strict_json

    config = strict_json((Path(adapter_dir) / CONFIG_NAME).read_text(), CONFIG_NAME)
    safe = peft_safe_config(config, module_names)
    accepted = {field.name for field in dataclasses.fields(LoraConfig) if field.init}
    return LoraConfig(**{key: value for key, value in safe.items() if key in accepted})
