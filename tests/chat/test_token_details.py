"""Token details stay where they are asked for: the OpenAI and LoRAX APIs. The socket cannot
ask (its params refuse the field by name), and its envelopes keep their small §1 shape."""

import pytest

from tests.chat.conftest import text_of

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_it_keeps_socket_token_envelopes_to_their_protocol_fields(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Hello", params={"max_tokens": 6, "temperature": 0})
    events = await socket.until_end()

    tokens = [e["payload"] for e in events if e["type"] == "inference.token"]
    assert tokens and text_of(events)
    assert all(set(payload) == {"message", "text", "index"} for payload in tokens)
    assert set(events[-1]["payload"]) == {"message", "reason", "status", "usage", "timings"}


@pytest.mark.parametrize("field", ["logprobs", "top_logprobs", "prompt_logprobs"])
async def test_it_refuses_token_details_on_the_socket_naming_the_field(owner, socket_for, field):
    socket = await socket_for(owner)
    await socket.communicator.send_json_to(
        {"type": "chat.send", "content": "hi", "params": {field: 1}}
    )
    events = await socket.until_end()

    assert events[0]["type"] == "inference.error"
    assert events[0]["payload"]["code"] == "bad_request"
    assert field in events[0]["payload"]["message"]
