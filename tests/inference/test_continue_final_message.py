"""A partial answer is extended, not answered: the prompt ends inside the assistant's turn."""

import pytest

from inference.model import load_base_model
from inference.types import ChatTurn, GenerationRequest


@pytest.fixture(scope="module")
def base(demo_model):
    return load_base_model(str(demo_model.base_dir), device="cpu")


def decoded(base, request) -> str:
    return base.tokenizer.decode(base.encode(request))


def test_it_ends_the_prompt_inside_the_unfinished_answer(base):
    turns = (ChatTurn("user", "hello"), ChatTurn("assistant", "once upon"))
    text = decoded(base, GenerationRequest(id="c", messages=turns, continue_final_message=True))
    assert text.endswith("once upon")  # no end-of-turn after it, no new assistant turn
    assert text.count("<|assistant|>") == 1


def test_it_opens_a_new_answer_by_default(base):
    turns = (ChatTurn("user", "once"),)
    assert decoded(base, GenerationRequest(id="n", messages=turns)).endswith("<|end|><|assistant|>")


def test_it_continues_an_answer_into_exactly_the_uninterrupted_text(engine):
    from tests.inference.helpers import QUESTION, chat, run

    whole = run(engine, chat(max_new_tokens=24, ignore_eos=True)).text
    first = run(engine, chat(max_new_tokens=9, ignore_eos=True)).text
    turns = (*QUESTION, ChatTurn("assistant", first))
    rest = run(engine, GenerationRequest(
        id="continue-join", messages=turns, continue_final_message=True,
        params=chat(max_new_tokens=15, ignore_eos=True).params,
    )).text

    assert first and rest
    assert first + rest == whole
