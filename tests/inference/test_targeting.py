"""PEFT's targeting rules on RE2: the same layers, ranks and alphas as PEFT itself, for benign
patterns; and the config PEFT is given builds the same adapter with literal names only."""

import dataclasses
import re
import time

import pytest
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

from inference.targeting import Targeting, peft_safe_config

BASE = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16}
CONFIGS = {
    "pattern-with-rank-and-alpha-patterns": {
        "target_modules": r".*\.(q_proj|v_proj|down_proj)",
        "rank_pattern": {r"layers\.1\..*": 4, "down_proj": 2},
        "alpha_pattern": {"v_proj": 32, r"model\.layers\.0\.mlp\.down_proj": 3.5},
    },
    "pattern-with-excluded-pattern": {
        "target_modules": r".*_proj", "exclude_modules": r".*layers\.0\.mlp\..*",
    },
    "list-with-layers-and-exclusions": {
        "target_modules": ["q_proj", "v_proj", "down_proj", "model.layers.1.mlp.up_proj"],
        "exclude_modules": ["model.layers.0.self_attn.q_proj"],
        "layers_to_transform": [1],
        "alpha_pattern": {"q_proj": 4, ".*": 2},
    },
    "list-with-a-named-layer-list": {
        "target_modules": ["k_proj", "o_proj"], "layers_to_transform": 0, "layers_pattern": "layers",
    },
    "full-names-as-pattern-keys": {
        "target_modules": ["gate_proj"],
        "rank_pattern": {"model.layers.0.mlp.gate_proj": 2},
        "alpha_pattern": {"gate_proj": 7},
    },
}


@pytest.fixture(scope="module")
def base_dir(demo_model):
    return demo_model.base_dir


def peft_built(base_dir, config: dict) -> dict[str, tuple[int, float]]:
    """What PEFT itself builds: per adapted module, its rank and alpha."""
    accepted = {field.name for field in dataclasses.fields(LoraConfig) if field.init}
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    adapted = get_peft_model(model, LoraConfig(**{k: v for k, v in config.items() if k in accepted}))
    return {
        name.removeprefix("base_model.model."): (module.r["default"], module.lora_alpha["default"])
        for name, module in adapted.named_modules()
        if isinstance(module, LoraLayer)
    }


def module_names(base_dir) -> list[str]:
    return [name for name, _ in AutoModelForCausalLM.from_pretrained(base_dir).named_modules()]


@pytest.mark.parametrize("name", CONFIGS)
def test_it_targets_what_peft_targets_with_the_same_rank_and_alpha(base_dir, name):
    config = {**BASE, **CONFIGS[name]}
    targeting = Targeting.from_config(config)

    ours = {
        module: (targeting.rank_of(module), targeting.alpha_of(module))
        for module in targeting.targeted(module_names(base_dir))
    }

    assert ours == peft_built(base_dir, config)
    assert len(ours) >= 2


@pytest.mark.parametrize("name", CONFIGS)
def test_it_gives_peft_a_config_of_literal_names_that_builds_the_same_adapter(base_dir, name):
    config = {**BASE, **CONFIGS[name]}

    names = module_names(base_dir)

    safe = peft_safe_config(config, names)

    assert peft_built(base_dir, safe) == peft_built(base_dir, config)
    literals = {re.escape(name) for name in names}
    assert set(safe["target_modules"].removeprefix("(?:").removesuffix(")").split("|")) <= literals
    assert set(safe.get("rank_pattern", {})) | set(safe.get("alpha_pattern", {})) <= literals


def test_it_resolves_a_backtracking_pattern_for_peft_in_no_time(base_dir):
    hostile = {**BASE, "target_modules": r".*\.(q_proj|v_proj)|([\w.]|[\w.])+!",
               "alpha_pattern": {r"([\w.]|[\w.])+!": 1}}
    began = time.monotonic()

    safe = peft_safe_config(hostile, module_names(base_dir))
    built = peft_built(base_dir, safe)  # PEFT's own `re` sees literal names only

    assert time.monotonic() - began < 30
    assert sorted(built) == sorted(
        f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")
    )
    assert set(built.values()) == {(8, 16)}
