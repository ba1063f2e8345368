"""Constrained decoding: rows with a grammar only ever write what it allows, side by side with
free rows in one batch, greedy or sampled, even from the tiny random demo model."""

import json

import jsonschema
import pytest

from inference.errors import InferenceError
from inference.grammar import json_object_grammar, json_schema_grammar
from tests.inference.helpers import Stream, chat, run

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}


def test_it_answers_json_that_validates_against_the_schema(engine):
    stream = run(engine, chat(grammar=json_schema_grammar(PERSON), max_new_tokens=80))

    assert stream.finish.reason == "stop"
    jsonschema.validate(json.loads(stream.text), PERSON)


def test_it_mixes_constrained_and_free_rows_greedy_and_sampled_in_one_batch(engine):
    grammar = json_schema_grammar(PERSON)
    requests = [
        chat(grammar=grammar, max_new_tokens=80),
        chat(max_new_tokens=20),
        chat(grammar=grammar, temperature=1.0, seed=5, max_new_tokens=80),
        chat(temperature=1.0, seed=5, max_new_tokens=20),
        chat(grammar=json_object_grammar(), temperature=0.8, top_k=40, seed=9, max_new_tokens=200),
    ]
    streams = [Stream() for _ in requests]
    for request, stream in zip(requests, streams):
        engine.submit(request, stream)
    for stream in streams:
        stream.wait(60)

    for index in (0, 2):
        assert streams[index].finish.reason == "stop"
        jsonschema.validate(json.loads(streams[index].text), PERSON)
    if streams[4].finish.reason == "stop":
        assert isinstance(json.loads(streams[4].text), dict)
    else:  # cut by the token limit: still a prefix the grammar allowed
        assert streams[4].text.startswith("{")
    assert not streams[1].text.startswith("{")
    alone = run(engine, chat(max_new_tokens=20))
    assert streams[1].text == alone.text  # a free row answers as it does alone


def test_it_refuses_a_schema_it_cannot_compile_naming_the_problem():
    with pytest.raises(InferenceError) as refused:
        json_schema_grammar({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})

    assert refused.value.code == "invalid_schema"
    assert "/nowhere" in refused.value.message


def test_it_keeps_the_same_answer_for_the_same_seed_with_a_grammar(engine):
    params = dict(grammar=json_schema_grammar(PERSON), temperature=1.0, seed=11, max_new_tokens=80)

    assert run(engine, chat(**params)).text == run(engine, chat(**params)).text


@pytest.mark.parametrize("max_new_tokens", [16, 30, 120])
def test_it_closes_the_json_before_the_token_limit_so_it_still_parses(engine, max_new_tokens):
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}

    for seed in range(3):
        stream = run(
            engine,
            chat(grammar=json_schema_grammar(schema), temperature=1.0, seed=seed, max_new_tokens=max_new_tokens),
        )
        jsonschema.validate(json.loads(stream.text), schema)


@pytest.mark.parametrize("seed", [1, 3])
def test_it_reports_length_for_json_that_the_token_limit_closed(engine, seed):
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    params = dict(grammar=json_schema_grammar(schema), temperature=1.0, seed=seed)
    free = run(engine, chat(**params, max_new_tokens=400))
    assert free.finish.reason == "stop" and free.finish.completion_tokens > 40  # ended by itself

    cut = run(engine, chat(**params, max_new_tokens=free.finish.completion_tokens - 10))

    assert cut.finish.reason == "length"
    jsonschema.validate(json.loads(cut.text), schema)
