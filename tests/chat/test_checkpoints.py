"""The web process saves the text so far of all its live answers together, every tick."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chatsite.chat.models import Conversation, Message
from chatsite.chat.streams import checkpoints

pytestmark = [pytest.mark.django_db(transaction=True)]


class Answer:
    """A live run as the checkpointer sees it: an id and text that grows."""

    def __init__(self, message_id: int):
        self.message_id = message_id
        self.text = ""
        self.saved = None
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1

    def checkpoint_text(self):
        if self.text == self.saved:
            return None
        self.saved = self.text
        return self.text


async def until(condition, within: float = 30) -> bool:
    """Poll an async `condition` until it holds, with a deadline generous for a busy machine."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def content_is(message_id: int, text: str) -> bool:
    return (await saved(message_id)).content == text


@database_sync_to_async
def live_answers(owner, count: int) -> list[int]:
    conversation = Conversation.objects.create(owner=owner)
    return [
        Message.objects.create(conversation=conversation, role="assistant", status="pending").pk
        for _ in range(count)
    ]


@database_sync_to_async
def saved(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


async def test_it_saves_every_live_answer_whose_text_grew_each_tick(owner, monkeypatch):
    monkeypatch.setattr(checkpoints, "EVERY_S", 0.05)
    first, second = [Answer(pk) for pk in await live_answers(owner, 2)]
    checkpoints.watch(first)
    checkpoints.watch(second)

    first.text, second.text = "the river", "a bridge"
    assert await until(lambda: content_is(first.message_id, "the river"))
    first.text = "the river runs"
    assert await until(lambda: content_is(first.message_id, "the river runs"))

    assert (await saved(second.message_id)).content == "a bridge"
    assert (await saved(first.message_id)).status == "streaming"
    assert first.ticks >= 2 and second.ticks >= 2
    checkpoints.forget(first)
    checkpoints.forget(second)


async def test_it_never_overwrites_an_answer_that_has_ended(owner):
    answer = Answer((await live_answers(owner, 1))[0])
    await database_sync_to_async(
        Message.objects.filter(pk=answer.message_id).update
    )(status="complete", content="final text")

    answer.text = "an older prefix"
    await checkpoints.save_now([answer])

    message = await saved(answer.message_id)
    assert (message.status, message.content) == ("complete", "final text")


async def test_it_stops_when_no_answer_is_live_and_starts_again_for_the_next(owner, monkeypatch):
    monkeypatch.setattr(checkpoints, "EVERY_S", 0.05)
    answer = Answer((await live_answers(owner, 1))[0])
    checkpoints.watch(answer)
    checkpoints.forget(answer)

    async def checkpointer_stopped():
        return checkpoints._here().task.done()

    assert await until(checkpointer_stopped)

    answer.text = "later"
    checkpoints.watch(answer)
    assert await until(lambda: content_is(answer.message_id, "later"))
    checkpoints.forget(answer)


async def test_one_statement_saves_many_answers_each_its_own_text_past_the_chunk_size(
    owner, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chatsite.chat.conversations import services

    monkeypatch.setattr(services, "CHECKPOINT_ROWS", 2)
    ids = await live_answers(owner, 5)
    ended = ids[-1]
    await database_sync_to_async(Message.objects.filter(pk=ended).update)(
        status="stopped", content="kept"
    )
    texts = {pk: f"text of {pk} — with ‘quotes’" for pk in ids}

    def save():
        with CaptureQueriesContext(connection) as queries:
            services.generation_checkpoints(texts)
        return [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]

    updates = await database_sync_to_async(save)()

    assert len(updates) == 3  # 5 answers, 2 per statement
    for pk in ids[:-1]:
        message = await saved(pk)
        assert (message.content, message.status) == (texts[pk], "streaming")
    message = await saved(ended)
    assert (message.content, message.status) == ("kept", "stopped")
