"""Token details: a row that asks gets each chosen token's id, text and log-probability (from
the distribution it was chosen from), its most likely alternatives and, on request, its
prompt's; every token is listed once, the end token last; rows that ask nothing get nothing."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from inference.grammar import json_object_grammar
from inference.logprobs import FLOOR
from tests.inference.helpers import QUESTION, Stream, chat, run


@pytest.fixture(scope="module")
def reference(demo_model):
    """Plain transformers on the same weights, and the engine's prompt for QUESTION."""
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_model.base_dir).eval()
    turns = [{"role": turn.role, "content": turn.content} for turn in QUESTION]
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False).input_ids
    return tokenizer, model, prompt


def reference_logprobs(reference, answer_ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / temperature) at each answer position, from one forward pass."""
    _, model, prompt = reference
    ids = torch.tensor([prompt + answer_ids])
    with torch.inference_mode():
        logits = model(ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def all_tokens(stream: Stream):
    return [token for delta in stream.deltas for token in delta.tokens] + list(stream.finish.tokens)


def test_it_reports_each_greedy_token_with_its_logprob_and_the_top_alternatives(engine, reference):
    stream = run(engine, chat(logprobs=True, top_logprobs=3, max_new_tokens=10))

    tokens = all_tokens(stream)
    assert [t.id for t in tokens][: len(stream.token_ids)] == stream.token_ids
    assert len(tokens) == stream.finish.completion_tokens
    expected = reference_logprobs(reference, [t.id for t in tokens])
    tokenizer = reference[0]
    for position, token in enumerate(tokens):
        assert token.logprob <= 0
        assert token.logprob == pytest.approx(float(expected[position, token.id]), abs=1e-4)
        assert len(token.top) == 3
        assert token.top[0].id == token.id  # greedy: the pick is the most likely token
        assert token.top[0].logprob == pytest.approx(token.logprob)
        assert [alt.logprob for alt in token.top] == sorted(
            (alt.logprob for alt in token.top), reverse=True
        )
    assert tokenizer.decode(stream.token_ids, skip_special_tokens=True) == stream.text
    assert "".join(t.text for t in tokens if not t.special) == stream.text
    # Alternatives read as they would have here: the pick's own text is its first one's.
    assert all(t.top[0].text == t.text for t in tokens if not t.special)


def test_it_reports_the_distribution_after_temperature_for_a_sampled_row(engine, reference):
    stream = run(engine, chat(logprobs=True, temperature=0.5, seed=3, max_new_tokens=8))

    tokens = all_tokens(stream)
    expected = reference_logprobs(reference, [t.id for t in tokens], temperature=0.5)
    for position, token in enumerate(tokens):
        assert token.logprob == pytest.approx(float(expected[position, token.id]), abs=1e-4)
        assert token.top == ()


def test_it_gives_the_same_answer_whether_or_not_logprobs_are_asked(engine):
    plain = run(engine, chat(temperature=0.9, seed=11, max_new_tokens=12))
    detailed = run(engine, chat(temperature=0.9, seed=11, max_new_tokens=12, logprobs=True))

    assert detailed.text == plain.text
    assert all(delta.tokens == () for delta in plain.deltas)
    assert plain.finish.tokens == () and plain.finish.prompt == ()


def test_it_lists_the_end_token_last_as_special(engine, reference):
    end_token = reference[0].eos_token_id
    stream = run(
        engine, chat(logprobs=True, logit_bias=((end_token, 100.0),), max_new_tokens=5)
    )

    assert stream.finish.reason == "stop"
    assert stream.finish.completion_tokens == 1
    (token,) = stream.finish.tokens
    assert token.id == end_token and token.special
    assert token.logprob == pytest.approx(0.0, abs=1e-3)  # the bias made it all but certain


def test_it_floors_the_alternatives_a_grammar_forbids(engine):
    stream = run(
        engine, chat(logprobs=True, top_logprobs=5, grammar=json_object_grammar(), max_new_tokens=3)
    )

    first = all_tokens(stream)[0]
    assert stream.text.startswith("{")
    assert math.isfinite(first.logprob)
    # After the grammar mask only a few tokens can open a JSON object: the rest are floored.
    assert all(alt.logprob >= FLOOR for alt in first.top)
    assert first.top[0].id == first.id


def test_it_reports_the_prompt_tokens_with_their_logprobs(engine, reference):
    stream = run(engine, chat(logprobs=True, prompt_logprobs=True, max_new_tokens=2))
    alone = run(engine, chat(max_new_tokens=2))

    _, model, prompt = reference
    prefill = stream.finish.prompt
    assert [t.id for t in prefill] == prompt
    assert prefill[0].logprob is None
    with torch.inference_mode():
        expected = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)
    for position, token in enumerate(prefill[1:], start=1):
        assert token.logprob == pytest.approx(float(expected[position - 1, token.id]), abs=1e-4)
    assert stream.text == alone.text  # prefilled apart, it still answers the same


def test_it_mixes_rows_with_and_without_details_in_one_batch(engine):
    requests = [
        chat(max_new_tokens=10),
        chat(logprobs=True, top_logprobs=2, max_new_tokens=10),
        chat(logprobs=True, prompt_logprobs=True, temperature=1.0, seed=2, max_new_tokens=10),
        chat(temperature=1.0, seed=2, max_new_tokens=10),
    ]
    streams = [Stream() for _ in requests]
    for request, stream in zip(requests, streams):
        engine.submit(request, stream)
    for stream in streams:
        stream.wait(60)

    assert streams[0].text == streams[1].text
    assert streams[2].text == streams[3].text
    counts = [s.finish.completion_tokens for s in streams]
    assert [len(all_tokens(s)) for s in streams] == [0, counts[1], counts[2], 0]
    assert streams[2].finish.prompt and not streams[1].finish.prompt


def test_it_refuses_more_than_twenty_top_logprobs(engine):
    stream = run(engine, chat(logprobs=True, top_logprobs=21))

    assert stream.failure.code == "invalid_request"
    assert "top_logprobs" in stream.failure.message
