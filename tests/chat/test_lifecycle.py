"""The answer lifecycle (chatsite/chat/streams/lifecycle.py) and its event logs: what every
runtime shares, checked without a runtime around it."""

import os

import pytest
import redis

from chatsite.chat.streams import tokenlog
from chatsite.errors import ChatError
from chatsite.chat.models import Message
from chatsite.chat.streams import lifecycle
from chatsite.chat.streams.event_log import MemoryLog, RedisLog
from inference.types import Failed, Finished, TextDelta
from tests.conftest import require_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MESSAGE = 1_000_001  # no row: only its Redis keys are used


def finished(reason="stop", completion_tokens=2):
    return Finished(reason, 3, completion_tokens, 1.0, 2.0)


class Saves:
    """The final rows the lifecycle asks to save, and what its log held at that moment."""

    def __init__(self, log):
        self.log, self.rows, self.log_then = log, [], []

    def __call__(self, **row):
        self.rows.append(row)
        self.log_then.append(list(self.log.entries))


async def test_it_numbers_what_it_appends_and_reads_after_a_number():
    log = MemoryLog()

    assert [log.append({"type": "inference.start", "payload": {}}) for _ in range(3)] == [0, 1, 2]
    assert log.read(0) == log.entries[1:] and log.read(2) == []


async def test_it_saves_the_final_row_before_it_publishes_the_end_with_that_status():
    log = MemoryLog()
    life = lifecycle.AnswerLifecycle(7, log)
    life.on_event(TextDelta("Hi", 0))
    life.on_event(TextDelta(" there", 1))
    life.on_event(finished())
    saves = Saves(log)

    life.finish(saves)

    (row,) = saves.rows
    assert row["content"] == "Hi there" and row["status"] == Message.Status.COMPLETE
    assert [e["type"] for e in saves.log_then[0]] == ["inference.token"] * 2  # no end yet
    assert row["end_event_id"] == log.seq == 2
    assert log.entries[-1]["payload"]["status"] == row["status"]
    assert log.entries[-1]["payload"]["reason"] == row["finish_reason"] == "stop"


async def test_it_keeps_the_first_cancel_cause_and_maps_it_to_status_and_reason():
    class Engine:
        cancelled = []

        def cancel(self, request_id):
            self.cancelled.append(request_id)

    log = MemoryLog()
    life = lifecycle.AnswerLifecycle(7, log)
    assert not life.cancel("stopped")  # no engine yet: nothing to cancel
    life.attach(Engine(), "r1")

    assert life.cancel("stopped") and not life.cancel("interrupted")
    life.on_event(finished("cancelled"))
    saves = Saves(log)
    life.finish(saves)

    assert Engine.cancelled == ["r1"]
    assert (saves.rows[0]["status"], saves.rows[0]["finish_reason"]) == ("stopped", "cancelled")


@pytest.mark.parametrize("cause", ["length", "timeout"])
def test_it_saves_an_answer_cut_by_a_cap_as_complete_and_continuable(cause):
    ended = finished("cancelled")

    assert lifecycle.status_for(ended, cause) == Message.Status.COMPLETE
    assert lifecycle.end_reason(ended, cause) == cause
    assert cause in lifecycle.CUT_REASONS


def test_it_cuts_at_the_byte_cap_before_the_time_cap(settings):
    settings.STREAM_MAX_BYTES, settings.STREAM_MAX_DURATION_S = 10, 1.0

    assert lifecycle.cap_reached(text_bytes=11, elapsed_s=2.0) == "length"
    assert lifecycle.cap_reached(text_bytes=10, elapsed_s=2.0) == "timeout"
    assert lifecycle.cap_reached(text_bytes=10, elapsed_s=1.0) is None


async def test_it_counts_a_lost_workers_tokens_and_numbers_new_tokens_after_the_earlier_text():
    log = MemoryLog()
    log.append({"type": "inference.start", "payload": {}})
    log.append({"type": "inference.token", "payload": {"text": "Once", "index": 0}})
    life = lifecycle.AnswerLifecycle(7, log, index_offset=1, generated_before=4)
    life.on_event(TextDelta(" upon", 0))
    life.on_event(finished(completion_tokens=1))
    saves = Saves(log)
    life.finish(saves)

    assert log.entries[2]["payload"]["index"] == 1
    assert saves.rows[0]["content"] == "Once upon"
    assert saves.rows[0]["finished"].completion_tokens == 5


async def test_it_ends_a_lost_answer_only_when_the_save_found_it_live():
    log = MemoryLog()
    lost = ChatError("worker_lost", "Gone.")

    assert not lifecycle.end_lost(log, 7, lost, save=lambda **row: False)
    assert log.entries == []
    assert lifecycle.end_lost(log, 7, lost, save=lambda **row: row["end_event_id"] == 1)
    assert [e["type"] for e in log.entries] == ["inference.error", "inference.end"]
    assert log.entries[-1]["payload"]["status"] == "error"


async def test_it_publishes_an_engine_failure_as_an_error_then_an_error_end():
    log = MemoryLog()
    life = lifecycle.AnswerLifecycle(7, log)
    life.on_event(Failed("engine_error", "Broke."))
    life.on_event(finished("error", 0))
    life.finish(Saves(log))

    assert [e["type"] for e in log.entries] == ["inference.error", "inference.end"]
    assert log.entries[-1]["payload"]["status"] == "error"


@pytest.fixture
def client():
    require_service("Redis", REDIS_URL)
    connection = redis.Redis.from_url(REDIS_URL)
    connection.delete(tokenlog.stream_key(MESSAGE), tokenlog.owner_key(MESSAGE))
    yield connection
    connection.delete(tokenlog.stream_key(MESSAGE), tokenlog.owner_key(MESSAGE))
    connection.close()


@pytest.mark.services
def test_it_appends_to_redis_as_its_writer_until_another_takes_the_answer_over(client):
    log = RedisLog(client, MESSAGE, writer="worker-a", seq=-1)
    assert log.append({"type": "inference.token", "payload": {"text": "a", "index": 0}}) == 0
    assert log.flush() and log.text == "a"

    tokenlog.take_over(client, MESSAGE)
    log.append({"type": "inference.token", "payload": {"text": "b", "index": 1}})

    assert not log.flush() and log.fenced
    assert [e["payload"]["text"] for e in log.read(-1)] == ["a"]  # nothing after the take-over
    reaper = RedisLog(client, MESSAGE, writer=tokenlog.REAPER, seq=tokenlog.last_seq(client, MESSAGE))
    reaper.append({"type": "inference.token", "payload": {"text": "c", "index": 1}})
    assert reaper.flush() and tokenlog.seq_of(client.xrevrange(tokenlog.stream_key(MESSAGE))[0][0]) == 1
