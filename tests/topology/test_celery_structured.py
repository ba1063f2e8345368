"""Celery mode: structured output and sampling parameters travel to the worker intact (the
task's JSON turns the request's tuples into lists; the worker rebuilds them)."""

import asyncio
import json

import jsonschema
import pytest

from tests.e2e.clients import chat_frame, open_socket, text_of, until_end
from tests.e2e.servers import sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(400)]

SCHEMA = {
    "type": "object",
    "properties": {"word": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["word", "count"],
    "additionalProperties": False,
}


def test_it_generates_schema_valid_json_with_bias_and_penalties_on_the_worker(stack):
    session = sign_up(stack.base_url, "jo")
    params = {
        "max_tokens": 80,
        "seed": 4,
        "temperature": 1.0,
        "top_k": 40,
        "presence_penalty": 0.5,
        "repetition_penalty": 1.1,
        "logit_bias": {"5": -100},
        "response_format": {"type": "json_schema", "schema": SCHEMA},
    }

    async def chat():
        async with await open_socket(stack.base_url, session) as ws:
            await ws.send(chat_frame("Hello!", adapter="demo-chef", params=params))
            return await until_end(ws)

    events = asyncio.run(chat())

    assert events[-1]["payload"]["reason"] == "stop", events[-1]
    jsonschema.validate(json.loads(text_of(events)), SCHEMA)
