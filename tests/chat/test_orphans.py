"""Answers nobody is left to finish: those of a web process that died, and one whose client left
while it was starting."""

import asyncio

import pytest

from chatsite.chat.models import Conversation, Message
from chatsite.chat.services import generations_interrupt_orphans
from tests.holding import HELD

pytestmark = pytest.mark.django_db


def test_it_marks_live_answers_interrupted_and_keeps_their_text(owner):
    conversation = Conversation.objects.create(owner=owner)
    live = Message.objects.create(
        conversation=conversation, role="assistant", content="half an", status="streaming"
    )
    done = Message.objects.create(
        conversation=conversation, role="assistant", content="whole", status="complete"
    )

    assert generations_interrupt_orphans() == 1

    live.refresh_from_db()
    done.refresh_from_db()
    assert (live.status, live.content, live.finish_reason) == ("interrupted", "half an", "interrupted")
    assert done.status == "complete"


@pytest.mark.django_db(transaction=True)
async def test_an_answer_whose_client_left_while_it_was_starting_ends_interrupted(
    owner, demo_model
):
    from asgiref.sync import sync_to_async

    from chatsite.chat import streaming
    from chatsite.chat.protocol import GenerationParams

    starting = asyncio.create_task(streaming.start(
        user=owner, conversation_id=None, content="Long",
        adapter_slug=None, params=GenerationParams(**HELD),
    ))
    await asyncio.sleep(0)  # the start is under way: recording the exchange
    starting.cancel()  # the client goes away now
    with pytest.raises(asyncio.CancelledError):
        await starting

    answer, deadline = None, asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        answer = await sync_to_async(Message.objects.filter(role="assistant").first)()
        if answer is not None and answer.status not in Message.LIVE_STATUSES:
            break
    assert answer is not None and answer.status == "interrupted"
