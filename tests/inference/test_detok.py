"""Incremental detokenisation: whole characters only, and deltas that add up to the decode."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from inference.detok import IncrementalDetokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "敏捷的棕色狐狸跳过了懒狗。我们今天去公园散步。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "Party time 🎉🎉 with family 👨‍👩‍👧 and pizza 🍕!",
]


@pytest.fixture(scope="module")
def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE, like GPT-2's or Llama 3's, trained here on a few sentences.

    Its vocabulary is small, so most non-Latin characters and every emoji span several tokens.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]
    )
    backend.train_from_iterator(SENTENCES, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")


def stream_deltas(tokenizer, ids: list[int]) -> list[str]:
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.push(token_id) for token_id in ids]
    return deltas + [detokenizer.flush()]


@pytest.mark.parametrize("text", SENTENCES, ids=["english", "greek", "chinese", "arabic", "emoji"])
def test_it_never_streams_half_a_character(byte_level_tokenizer, text):
    ids = byte_level_tokenizer(text).input_ids

    deltas = stream_deltas(byte_level_tokenizer, ids)

    assert all("\ufffd" not in delta for delta in deltas)
    assert "".join(deltas) == byte_level_tokenizer.decode(ids) == text


def test_it_holds_text_back_until_a_character_is_complete(byte_level_tokenizer):
    ids = byte_level_tokenizer("🍕").input_ids
    assert len(ids) > 1, "the emoji should span several byte tokens"

    deltas = stream_deltas(byte_level_tokenizer, ids)

    assert deltas[:-2] == [""] * (len(ids) - 1)
    assert deltas[-2] == "🍕"


def test_it_flushes_an_unfinished_character_at_the_end(byte_level_tokenizer):
    ids = byte_level_tokenizer("ok 🍕").input_ids[:-1]

    deltas = stream_deltas(byte_level_tokenizer, ids)

    assert "".join(deltas) == byte_level_tokenizer.decode(ids)
    assert "\ufffd" not in "".join(deltas[:-1])


def test_it_skips_special_tokens(byte_level_tokenizer):
    ids = byte_level_tokenizer("hello").input_ids + [byte_level_tokenizer.eos_token_id]

    assert "".join(stream_deltas(byte_level_tokenizer, ids)) == "hello"


def test_it_keeps_the_spaces_of_a_word_level_tokenizer(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    ids = tokenizer("the river, and bright stone.", add_special_tokens=False).input_ids

    deltas = stream_deltas(tokenizer, ids)

    assert deltas == ["the", " river", ",", " and", " bright", " stone", ".", ""]


def test_it_keeps_the_first_space_when_decoding_against_shown_context(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    shown = tokenizer("the river", add_special_tokens=False).input_ids
    more = tokenizer(" and bright stone", add_special_tokens=False).input_ids

    detokenizer = IncrementalDetokenizer(tokenizer, context=shown)
    deltas = [detokenizer.push(token_id) for token_id in more] + [detokenizer.flush()]

    assert "".join(deltas) == " and bright stone"  # the context itself is never sent again
