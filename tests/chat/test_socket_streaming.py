"""/ws/chat/: a signed-in user sends a message and watches the answer stream in."""

import pytest
from channels.db import database_sync_to_async

from chatsite.chat.models import Conversation, Message
from tests.chat.conftest import text_of, types_of

pytestmark = [pytest.mark.django_db(transaction=True)]

GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 24}


@database_sync_to_async
def saved(message_id: int) -> Message:
    return Message.objects.select_related("adapter").get(pk=message_id)


async def test_it_streams_start_tokens_and_end(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Tell me about rivers.", adapter="demo-poet", params=GREEDY)
    events = await socket.until_end()

    assert events[0]["type"] == "inference.start"
    assert events[0]["payload"]["adapter"] == "demo-poet"
    assert set(types_of(events[1:-1])) == {"inference.token"}
    indexes = [e["payload"]["index"] for e in events if e["type"] == "inference.token"]
    assert indexes == list(range(len(indexes)))
    assert events[-1]["payload"]["reason"] in ("stop", "length")


async def test_it_saves_the_answer_complete_with_the_streamed_text(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Tell me about rivers.", adapter="demo-poet", params=GREEDY)
    events = await socket.until_end()

    answer = await saved(events[0]["payload"]["message"])
    assert answer.status == Message.Status.COMPLETE
    assert answer.content == text_of(events)
    assert answer.adapter.slug == "demo-poet"
    assert answer.completion_tokens == events[-1]["payload"]["usage"]["completion_tokens"] > 0
    assert answer.ttft_ms is not None and answer.total_ms >= answer.ttft_ms


async def test_it_gives_different_answers_for_two_adapters_and_the_base(owner, socket_for):
    socket = await socket_for(owner)
    answers = []
    for adapter in ("demo-poet", "demo-chef", None):
        await socket.chat("What should I cook tonight?", adapter=adapter, params=GREEDY)
        answers.append(text_of(await socket.until_end()))

    assert len(set(answers)) == 3, answers


async def test_it_creates_a_conversation_with_the_chosen_adapter(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Hello there", adapter="demo-terse", params=GREEDY)
    events = await socket.until_end()

    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=events[0]["payload"]["conversation"]
    )
    assert conversation.owner_id == owner.pk
    assert conversation.title == "Hello there"
    assert conversation.adapter_id is not None


async def test_it_uses_the_conversations_adapter_when_none_is_named(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("First", adapter="demo-terse", params=GREEDY)
    first = await socket.until_end()

    await socket.chat("Second", conversation=first[0]["payload"]["conversation"], params=GREEDY)
    second = await socket.until_end()

    assert second[0]["payload"]["adapter"] == "demo-terse"
    assert second[0]["payload"]["conversation"] == first[0]["payload"]["conversation"]


async def test_it_answers_the_follow_up_with_the_history_in_the_prompt(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("First", params=GREEDY)
    first = await socket.until_end()
    await socket.chat("Second", conversation=first[0]["payload"]["conversation"], params=GREEDY)
    second = await socket.until_end()

    assert (
        second[-1]["payload"]["usage"]["prompt_tokens"]
        > first[-1]["payload"]["usage"]["prompt_tokens"]
    )


async def test_it_switches_an_existing_conversation_back_to_the_base_with_an_empty_adapter(
    owner, socket_for
):
    socket = await socket_for(owner)
    await socket.chat("First", adapter="demo-terse", params=GREEDY)
    first = await socket.until_end()

    await socket.chat(
        "Second", conversation=first[0]["payload"]["conversation"], adapter="", params=GREEDY
    )
    second = await socket.until_end()

    assert second[0]["payload"]["adapter"] is None
    assert second[-1]["payload"]["reason"] in ("stop", "length")


async def test_it_saves_an_error_answer_when_the_model_cannot_be_loaded(
    owner, socket_for, settings, monkeypatch
):
    import chatsite.chat.workers.engine_holder

    monkeypatch.setattr(chatsite.chat.workers.engine_holder, "_engine", None)
    settings.BASE_MODEL = "/nonexistent/model"
    socket = await socket_for(owner)
    await socket.chat("Anyone there?")
    events = await socket.until_end()

    assert types_of(events) == ["inference.start", "inference.error", "inference.end"]
    assert events[1]["payload"]["code"] == "engine_unavailable"
    answer = await saved(events[0]["payload"]["message"])
    assert (answer.status, answer.error_code) == (Message.Status.ERROR, "engine_unavailable")
