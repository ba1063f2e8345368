"""The demo model: a tiny random Llama, a whole-word tokenizer and three PEFT LoRA adapters."""

import json
import random

from transformers import AutoTokenizer

from inference.demo import CHARACTERS, DIGITS, build_demo_model
from inference.demo_words import WORDS
from tests.inference.helpers import chat, run


def test_it_writes_a_transformers_model_and_peft_adapters(demo_model):
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json"):
        assert (demo_model.base_dir / name).is_file(), name
    assert [adapter.slug for adapter in demo_model.adapters] == ["demo-poet", "demo-terse", "demo-chef"]
    for adapter in demo_model.adapters:
        assert (adapter.path / "adapter_config.json").is_file()
        assert (adapter.path / "adapter_model.safetensors").is_file()
        assert not (adapter.path / "adapter_model.bin").exists()
        assert adapter.name and "random-weight demo adapter" in adapter.description


def test_it_gives_each_adapter_its_own_rank_and_target_modules(demo_model):
    configs = [json.loads((a.path / "adapter_config.json").read_text()) for a in demo_model.adapters]
    assert {config["peft_type"] for config in configs} == {"LORA"}
    assert len({config["r"] for config in configs}) == 3
    assert len({frozenset(config["target_modules"]) for config in configs}) == 3


def test_it_builds_the_same_bytes_from_the_same_seed(tmp_path, demo_model):
    again = build_demo_model(tmp_path / "base", tmp_path / "adapters", seed=0)

    assert (again.base_dir / "model.safetensors").read_bytes() == (
        demo_model.base_dir / "model.safetensors"
    ).read_bytes()
    for first, second in zip(demo_model.adapters, again.adapters):
        assert (second.path / "adapter_model.safetensors").read_bytes() == (
            first.path / "adapter_model.safetensors"
        ).read_bytes()


def test_it_builds_different_weights_from_another_seed(tmp_path, demo_model):
    other = build_demo_model(tmp_path / "base", tmp_path / "adapters", seed=1)

    assert (other.base_dir / "model.safetensors").read_bytes() != (
        demo_model.base_dir / "model.safetensors"
    ).read_bytes()


def test_it_leaves_an_existing_build_alone(demo_model):
    files = sorted(path for path in demo_model.base_dir.parent.rglob("*") if path.is_file())
    before = {path: path.stat().st_mtime_ns for path in files}

    again = build_demo_model(demo_model.base_dir, demo_model.adapters[0].path.parent, seed=0)

    assert again == demo_model
    assert {path: path.stat().st_mtime_ns for path in files} == before


def test_it_rebuilds_when_the_marker_names_another_seed(tmp_path):
    first = build_demo_model(tmp_path / "base", tmp_path / "adapters", seed=1)
    weights = (first.base_dir / "model.safetensors").read_bytes()

    build_demo_model(tmp_path / "base", tmp_path / "adapters", seed=2)

    assert (first.base_dir / "model.safetensors").read_bytes() != weights


def test_it_decodes_any_token_ids_into_vocabulary_words(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    words = set(WORDS) | set(DIGITS)
    word_ids = range(len(tokenizer) - len(CHARACTERS))  # the single characters come last
    rng = random.Random(0)

    for _ in range(20):
        text = tokenizer.decode([rng.choice(word_ids) for _ in range(30)], skip_special_tokens=True)
        assert "\ufffd" not in text
        for piece in text.split():
            word = piece.strip(".,!?':;-")
            assert word == "" or word in words, (piece, text)


def test_it_spells_any_printable_ascii_with_its_single_character_tokens(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    text = '{"Name": [1, 2.5e3], "ok": true}'
    pieces = [" " if c == " " else c for c in text]

    ids = tokenizer.convert_tokens_to_ids(["\u2581" if c == " " else c for c in pieces])

    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_it_writes_words_not_single_characters_when_unconstrained(engine):
    stream = run(engine, chat(temperature=1.0, seed=0, max_new_tokens=200, ignore_eos=True))

    characters = set(engine.base.tokenizer.convert_tokens_to_ids(list(CHARACTERS)))
    assert sum(token in characters for token in stream.token_ids) < 200 * 0.15


def test_it_spaces_words_and_punctuation_like_prose(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)

    ids = tokenizer("The river, and bright stone.", add_special_tokens=False).input_ids

    assert tokenizer.convert_ids_to_tokens(ids) == ["▁the", "▁river", ",", "▁and", "▁bright", "▁stone", "."]
    assert tokenizer.decode(ids) == "the river, and bright stone."


def test_it_renders_chat_messages_with_its_template(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    messages = [{"role": "system", "content": "be kind."}, {"role": "user", "content": "hello"}]

    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    assert text == "<s><|system|>be kind.<|end|><|user|>hello<|end|><|assistant|>"
    assert tokenizer.eos_token == "</s>"
