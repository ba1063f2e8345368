"""Answers nobody is left to finish: those of a web process that is provably gone (never those of
one that still beats), and one whose client left while it was starting."""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from chatsite.chat.conversations.services import generations_interrupt_orphans
from chatsite.chat.models import Conversation, Message, ServerProcess
from tests.holding import HELD

pytestmark = pytest.mark.django_db


def live_answer(owner, *, worker: str, silent_for_s: float, content: str = "half an") -> Message:
    conversation = Conversation.objects.create(owner=owner)
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content=content, status="streaming",
        worker=worker,
    )
    Message.objects.filter(pk=answer.pk).update(
        updated_at=timezone.now() - timedelta(seconds=silent_for_s)
    )
    return answer


def beat(name: str, *, ago_s: float) -> None:
    ServerProcess.objects.create(name=name, beat_at=timezone.now() - timedelta(seconds=ago_s))


def test_it_marks_the_live_answers_of_a_silent_owner_interrupted_and_keeps_their_text(owner):
    beat("gone", ago_s=60)
    orphan = live_answer(owner, worker="gone", silent_for_s=60)
    done = Message.objects.create(
        conversation=orphan.conversation, role="assistant", content="whole", status="complete",
        worker="gone",
    )

    assert generations_interrupt_orphans(lost_after_s=15) == 1

    orphan.refresh_from_db()
    done.refresh_from_db()
    assert (orphan.status, orphan.content, orphan.finish_reason) == (
        "interrupted", "half an", "interrupted")
    assert done.status == "complete"
    assert not ServerProcess.objects.filter(name="gone").exists()


def test_it_leaves_alone_the_answers_of_a_process_that_still_beats(owner):
    beat("alive", ago_s=1)
    waiting = live_answer(owner, worker="alive", silent_for_s=60)  # queued, no text for a while

    assert generations_interrupt_orphans(lost_after_s=15) == 0

    waiting.refresh_from_db()
    assert waiting.status == "streaming"


def test_it_leaves_alone_an_answer_saved_recently_whose_owner_has_not_beaten_yet(owner):
    fresh = live_answer(owner, worker="just-started", silent_for_s=1)
    beat("idle-then-busy", ago_s=60)  # idle for a minute, and has just started an answer
    resumed = live_answer(owner, worker="idle-then-busy", silent_for_s=0)

    assert generations_interrupt_orphans(lost_after_s=15) == 0

    assert Message.objects.get(pk=fresh.pk).status == "streaming"
    assert Message.objects.get(pk=resumed.pk).status == "streaming"


def test_it_ends_an_answer_with_no_owner_once_nothing_saved_it_for_the_limit(owner):
    legacy = live_answer(owner, worker="", silent_for_s=60)  # from before owners were recorded

    assert generations_interrupt_orphans(lost_after_s=15) == 1
    assert Message.objects.get(pk=legacy.pk).status == "interrupted"


def test_it_records_this_process_as_the_owner_of_an_answer_it_starts(owner):
    from chatsite.chat.conversations.services import exchange_start
    from chatsite.chat.streams.protocol import GenerationParams
    from chatsite.chat.workers import processes

    exchange = exchange_start(
        user=owner, conversation_id=None, content="Hi", adapter_slug=None,
        params=GenerationParams(),
    )

    assert exchange.assistant_message.worker == processes.NAME
    assert Message.objects.get(pk=exchange.assistant_message.pk).worker == processes.NAME


@pytest.mark.django_db(transaction=True)
async def test_an_answer_whose_client_left_while_it_was_starting_ends_interrupted(
    owner, demo_model
):
    from asgiref.sync import sync_to_async

    from chatsite.chat.streams.protocol import GenerationParams
    from chatsite.chat.transports import streaming

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
