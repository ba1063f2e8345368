"""INFERENCE_MODE=lorax: what a LoRAX server is asked for, and what it cannot be asked for."""

import pytest

from inference.errors import InferenceError
from inference.grammar import json_object_grammar
from inference.lorax_backend import _parameters
from tests.inference.helpers import chat


def test_it_passes_top_k_and_the_repetition_penalty_on():
    sent = _parameters(chat(temperature=0.8, top_k=20, repetition_penalty=1.3))

    assert (sent["top_k"], sent["repetition_penalty"], sent["do_sample"]) == (20, 1.3, True)


def test_it_sends_neither_when_left_at_their_defaults():
    sent = _parameters(chat())

    assert sent["top_k"] is None and sent["repetition_penalty"] is None


@pytest.mark.parametrize(
    "params, field",
    [
        ({"grammar": json_object_grammar()}, "response_format"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": ((5, 1.0),)}, "logit_bias"),
    ],
)
def test_it_refuses_what_a_lorax_server_cannot_do_naming_it(params, field):
    with pytest.raises(InferenceError) as refused:
        _parameters(chat(**params))

    assert refused.value.code == "unsupported_parameter"
    assert field in refused.value.message
