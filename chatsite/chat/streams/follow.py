"""Following an answer: its live log while there is one, else its saved row replayed
(docs/ARCHITECTURE.md, "How a token travels"). Every transport (socket, native SSE, OpenAI and
LoRAX streams) follows through `follow_or_replay`, and the replay of a saved answer is written
only here.

A follower gets (seq, envelope) pairs numbered as the answer's log numbers them (start 0), and
closes its subscription when it leaves, so the run's disconnect policy applies.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from chatsite.chat.streams import envelopes
from chatsite.errors import ChatError
from chatsite.chat.models import Message
from chatsite.chat.streams.lifecycle import opening


def from_saved(message: Message) -> list[dict]:
    """The whole answer as one replay: the opening of a log with all its saved text, then how it
    ended. An answer still live without a log (its runtime is gone) ends as interrupted."""
    events = opening(message)
    if message.error_code:
        events.append(envelopes.error(ChatError(message.error_code, message.error_text), message=message.pk))
    live = message.status in Message.LIVE_STATUSES
    events.append(
        envelopes.end(
            message=message.pk,
            reason=message.finish_reason or "interrupted",
            status=Message.Status.INTERRUPTED if live else message.status,
            prompt_tokens=message.prompt_tokens or 0,
            completion_tokens=message.completion_tokens or 0,
            ttft_ms=message.ttft_ms,
            total_ms=message.total_ms or 0.0,
        )
    )
    return events


def numbered_saved(message: Message) -> list[tuple[int, dict]]:
    """`from_saved` with the numbers the live log gave those events: the start is 0, the end
    keeps its live number (`end_event_id`) and the events before it count down from there, so
    the one token stands for every live token up to its number. Without a saved number: 0, 1…"""
    events = from_saved(message)
    end_id = message.end_event_id
    if end_id is None:
        return list(enumerate(events))
    first = end_id - len(events) + 2
    return [(0, events[0])] + [(first + i, event) for i, event in enumerate(events[1:])]


def saved_after(message: Message, after: int) -> list[tuple[int, dict]]:
    """The saved answer's events after `after`. A follower that holds part of the text (the
    next saved event is the one token, which holds it all) gets the whole answer again from its
    start: the replayed start tells it to begin again, with no gap and no repeat."""
    events = numbered_saved(message)
    later = [(seq, envelope) for seq, envelope in events if seq > after]
    if after > 0 and later and later[0][1]["type"] == "inference.token":
        return events
    return later


class Replay:
    """A subscription to a saved answer (the same shape as a live run's)."""

    def __init__(self, events: list[tuple[int, dict]]):
        self.events = list(events)  # what is left to give

    @classmethod
    async def of(cls, message_id: int, after: int) -> "Replay":
        message = await database_sync_to_async(
            Message.objects.select_related("adapter").get
        )(pk=message_id)
        return cls(saved_after(message, after))

    def holds_part(self, after: int) -> bool:
        """Whether it starts again for a follower that holds part of the answer after all."""
        return bool(self.events) and self.events[0][0] <= after

    def __aiter__(self):
        return self

    async def __anext__(self) -> tuple[int, dict]:
        if not self.events:
            raise StopAsyncIteration
        return self.events.pop(0)

    def close(self) -> None:
        self.events.clear()


async def follow_or_replay(message: Message, after: int = -1):
    """A subscription, from the event after `after`, to the answer's live log, or to `message`
    (its row, read with its adapter) once the log is gone. Async-iterate it for (seq, envelope);
    `close()` it on leaving."""
    from chatsite.chat.workers.local_run import run_of

    run = run_of(message.pk)
    if run is not None and await run.has_log():
        return run.subscribe(after)
    return Replay(saved_after(message, after))
