"""A tiny random-weight Llama, its whole-word tokenizer and three LoRA adapters, built locally.

The demo model lets Patchbay run end to end (web tier, worker, engine, streaming) on a laptop
without downloading anything. Its weights are random, so it writes nonsense, but legible
nonsense: every token is a whole English word or a punctuation mark. The adapters are real
PEFT files with different ranks and target modules, so loading and hot-swapping them exercises
the same code paths as real fine-tunes.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from inference.demo_words import WORDS

# Bump when the builder's output changes, so existing demo directories get rebuilt.
BUILDER_VERSION = 4
MARKER_NAME = "patchbay-demo.json"

SPACE = "▁"  # Metaspace's stand-in for the space before a word
SPECIAL_TOKENS = (
    "<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
)
PUNCTUATION = (".", ",", "!", "?", "'", ":", ";", "-")
DIGITS = tuple(str(d) for d in range(10))
# Every printable ASCII character as a token of its own, with no leading space, so that any JSON
# (a schema's keys, numbers, braces) can be spelled when a grammar constrains the answer
# (inference/grammar.py). Encoding never produces them from words; unconstrained, the model
# rarely picks them (CHARACTER_WEIGHT), so its nonsense still reads as words.
CHARACTERS = tuple(
    c for c in map(chr, range(0x21, 0x7F)) if c not in PUNCTUATION
) + (SPACE,)
CHARACTER_WEIGHT = 0.3
# Except the ones that close a JSON string, object or array: favoured like full stops, so that
# under a grammar the nonsense ends its strings and objects (and reads as words, unconstrained).
CLOSING_CHARACTERS = ('"', "}", "]")
CLOSING_WEIGHT = 2.0

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Larger than the usual 0.02 initialisation: tiny random models with small weights repeat one
# word forever; at 0.3 greedy output wanders through the vocabulary.
WEIGHT_STD = 0.3

BASE_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class DemoAdapter:
    slug: str
    name: str
    description: str
    path: Path


@dataclass(frozen=True)
class DemoModel:
    base_dir: Path
    adapters: tuple[DemoAdapter, ...]


@dataclass(frozen=True)
class _AdapterSpec:
    slug: str
    name: str
    description: str
    rank: int
    target_modules: tuple[str, ...]


ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ADAPTER_SPECS = (
    _AdapterSpec(
        slug="demo-poet",
        name="Demo Poet",
        description="A random-weight demo adapter (rank 8, query and value projections).",
        rank=8,
        target_modules=("q_proj", "v_proj"),
    ),
    _AdapterSpec(
        slug="demo-terse",
        name="Demo Terse",
        description="A random-weight demo adapter (rank 4, all attention projections).",
        rank=4,
        target_modules=ATTENTION,
    ),
    _AdapterSpec(
        slug="demo-chef",
        name="Demo Chef",
        description="A random-weight demo adapter (rank 16, attention and MLP projections).",
        rank=16,
        target_modules=ATTENTION + MLP,
    ),
)


def build_demo_model(base_dir: Path, adapters_dir: Path, seed: int = 0) -> DemoModel:
    """Write the demo base model and adapters, or reuse them when a matching build is there."""
    base_dir, adapters_dir = Path(base_dir), Path(adapters_dir)
    demo = DemoModel(
        base_dir=base_dir,
        adapters=tuple(
            DemoAdapter(spec.slug, spec.name, spec.description, adapters_dir / spec.slug)
            for spec in ADAPTER_SPECS
        ),
    )
    if _is_built(demo, seed):
        return demo

    tokenizer = build_tokenizer()
    # A private RNG stream: same seed, same bytes, and the caller's global RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_base_model(tokenizer)
        base_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
        for spec in ADAPTER_SPECS:
            _save_adapter(model, spec, adapters_dir / spec.slug, base_dir)
    _marker(base_dir).write_text(json.dumps(_marker_content(seed)))
    return demo


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer: lowercase words with their leading space, punctuation, digits,
    and single characters for spelling anything else."""
    tokens = (
        list(SPECIAL_TOKENS)
        + [SPACE + word for word in WORDS]
        + list(PUNCTUATION)
        + [SPACE + digit for digit in DIGITS]
        + list(CHARACTERS)
    )
    vocabulary = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    # Metaspace turns "the river," into "▁the" "▁river,", Punctuation then splits off the ",".
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()]
    )
    backend.decoder = decoders.Metaspace()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tokens.index("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=list(SPECIAL_TOKENS[4:]),
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _build_base_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    end_of_turn = tokenizer.convert_tokens_to_ids("<|end|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # Long enough for a test to hold an answer open for minutes (tests/holding.py).
        max_position_embeddings=65536,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    _randomize(model.parameters(), std=WEIGHT_STD)
    # Favour full stops and commas a little, so the nonsense reads in sentences.
    with torch.no_grad():
        for mark in (".", ","):
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(mark)] *= 2.0
        for character in CHARACTERS:
            weight = CLOSING_WEIGHT if character in CLOSING_CHARACTERS else CHARACTER_WEIGHT
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(character)] *= weight
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, end_of_turn],
        pad_token_id=tokenizer.pad_token_id,
    )
    return model.eval()


def _save_adapter(base: LlamaForCausalLM, spec: _AdapterSpec, path: Path, base_dir: Path) -> None:
    """Save a real PEFT LoRA adapter whose random weights are big enough to change every answer."""
    model = copy.deepcopy(base)
    model.name_or_path = str(base_dir)  # recorded as base_model_name_or_path
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=2 * spec.rank,
        target_modules=list(spec.target_modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # PEFT reads transformers' deprecated `is_gradient_checkpointing`: noise on every start.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        adapted = get_peft_model(model, config)
    # PEFT starts lora_B at zero (a no-op adapter); draw both factors instead.
    _randomize((p for name, p in adapted.named_parameters() if "lora_" in name), std=WEIGHT_STD)
    adapted.save_pretrained(path)


def _randomize(parameters, *, std: float) -> None:
    """Draw every matrix from N(0, std) in a fixed order; leave norm weights at one."""
    with torch.no_grad():
        for parameter in parameters:
            if parameter.dim() >= 2:
                parameter.normal_(0.0, std)


def _is_built(demo: DemoModel, seed: int) -> bool:
    marker = _marker(demo.base_dir)
    try:
        if json.loads(marker.read_text()) != _marker_content(seed):
            return False
    except (OSError, ValueError):
        return False
    files = [demo.base_dir / name for name in BASE_FILES]
    files += [adapter.path / name for adapter in demo.adapters for name in ADAPTER_FILES]
    return all(path.is_file() for path in files)


def _marker(base_dir: Path) -> Path:
    return base_dir / MARKER_NAME


def _marker_content(seed: int) -> dict:
    return {"builder_version": BUILDER_VERSION, "seed": seed}
