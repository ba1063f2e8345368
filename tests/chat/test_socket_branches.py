"""Branches over /ws/chat/: send from a chosen parent, regenerate a sibling, continue in place."""

import pytest
from channels.db import database_sync_to_async

from chatsite.chat.models import Conversation, Message
from tests.chat.conftest import text_of, types_of

pytestmark = [pytest.mark.django_db(transaction=True)]

SHORT = {"max_tokens": 8, "seed": 1}


@database_sync_to_async
def saved(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


@database_sync_to_async
def stopped_answer(user, content: str = "Once upon a time") -> Message:
    conversation = Conversation.objects.create(owner=user, title="Story")
    question = Message.objects.create(conversation=conversation, role="user", content="A story?")
    return Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content=content,
        status=Message.Status.STOPPED, finish_reason="cancelled",
    )


async def chat(socket, content="Hello", **fields) -> list[dict]:
    await socket.chat(content, params=SHORT, **fields)
    return await socket.until_end()


async def test_it_names_the_answered_message_in_the_start_event(owner, socket_for):
    events = await chat(await socket_for(owner))
    answer = await saved(events[0]["payload"]["message"])
    assert events[0]["payload"]["parent"] == answer.parent_id


async def test_it_answers_from_the_parent_the_client_names(owner, socket_for):
    socket = await socket_for(owner)
    first = await chat(socket)
    conversation = first[0]["payload"]["conversation"]
    user_id = first[0]["payload"]["parent"]
    # An edit of the first message: a new first message, a sibling of the old one.
    edited = await chat(socket, "Hello again", conversation=conversation, parent=None)
    new_user = await saved(edited[0]["payload"]["parent"])
    assert new_user.parent_id is None and new_user.pk != user_id
    # A follow-up to the old branch, although the newest message is on the new one.
    follow_up = await chat(socket, "And then?", conversation=conversation,
                           parent=first[0]["payload"]["message"])
    assert (await saved(follow_up[0]["payload"]["parent"])).parent_id == first[0]["payload"]["message"]


async def test_it_refuses_a_parent_from_another_conversation(owner, socket_for):
    socket = await socket_for(owner)
    elsewhere = await chat(socket)
    here = await chat(socket)
    events = await chat(socket, conversation=here[0]["payload"]["conversation"],
                        parent=elsewhere[0]["payload"]["message"])
    assert types_of(events) == ["inference.error", "inference.end"]
    assert events[0]["payload"]["code"] == "not_found"


async def test_it_refuses_a_parent_for_a_new_conversation(owner, socket_for):
    events = await chat(await socket_for(owner), parent=1)
    assert events[0]["payload"]["code"] == "bad_request"


async def test_it_regenerates_a_sibling_answer_to_the_same_message(owner, socket_for):
    socket = await socket_for(owner)
    first = await chat(socket)
    await socket.send(type="chat.regenerate", message=first[0]["payload"]["message"],
                      adapter="demo-terse", params={"max_tokens": 8, "seed": 2})
    second = await socket.until_end()
    sibling = await saved(second[0]["payload"]["message"])
    assert sibling.pk != first[0]["payload"]["message"]
    assert sibling.parent_id == first[0]["payload"]["parent"]
    assert second[0]["payload"]["adapter"] == "demo-terse"
    assert sibling.status == Message.Status.COMPLETE and sibling.content == text_of(second)


async def test_it_refuses_to_regenerate_another_users_answer(owner, other_user, socket_for):
    answer = await stopped_answer(owner)
    socket = await socket_for(other_user)
    await socket.send(type="chat.regenerate", message=answer.pk)
    events = await socket.until_end()
    assert events[0]["payload"]["code"] == "not_found"


async def test_it_continues_a_stopped_answer_in_place(owner, socket_for):
    answer = await stopped_answer(owner)
    socket = await socket_for(owner)
    await socket.send(type="chat.continue", message=answer.pk, params=SHORT)
    events = await socket.until_end()
    assert events[0]["payload"]["message"] == answer.pk
    # The earlier text comes first, so a follower who starts from nothing sees it all.
    assert events[1]["payload"] == {"message": answer.pk, "text": "Once upon a time", "index": 0}
    continued = await saved(answer.pk)
    assert continued.status == Message.Status.COMPLETE
    assert continued.content == text_of(events)
    assert continued.content.startswith("Once upon a time") and len(continued.content) > 16


async def test_it_refuses_to_continue_a_finished_answer(owner, socket_for):
    socket = await socket_for(owner)
    first = await chat(socket)
    answer = await saved(first[0]["payload"]["message"])
    if answer.finish_reason == "length":  # cut at max_tokens: that one may be continued
        await database_sync_to_async(Message.objects.filter(pk=answer.pk).update)(finish_reason="stop")
    await socket.send(type="chat.continue", message=answer.pk)
    events = await socket.until_end()
    assert types_of(events) == ["inference.error", "inference.end"]
    assert events[0]["payload"]["code"] == "bad_request"
    assert (await saved(answer.pk)).status == Message.Status.COMPLETE


async def test_it_continues_an_answer_cut_at_the_length_limit(owner, socket_for):
    socket = await socket_for(owner)
    first = await chat(socket)
    answer = await saved(first[0]["payload"]["message"])
    assert answer.finish_reason == "length"  # 8 tokens, no end-of-turn from the demo model
    await socket.send(type="chat.continue", message=answer.pk, params=SHORT)
    events = await socket.until_end()
    assert text_of(events).startswith(answer.content)
    assert (await saved(answer.pk)).content == text_of(events)
