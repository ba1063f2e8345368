"""BatchEngine: streaming, limits, stop strings, sampling and cancellation on the demo model."""


import pytest
from transformers import AutoTokenizer

from inference.engine import BatchEngine
from inference.types import (
    Finished,
    GenerationRequest,
    SamplingParams,
    Started,
    TextDelta,
)
from tests.inference.helpers import Stream, chat, reference_text, run


def test_it_streams_started_then_text_deltas_then_finished(engine):
    stream = run(engine, chat(max_new_tokens=12))

    assert isinstance(stream.events[0], Started) and stream.events[0].prompt_tokens > 0
    middle = stream.events[1:-1]
    assert middle and all(isinstance(event, TextDelta) and event.text for event in middle)
    assert [delta.index for delta in middle] == list(range(len(middle)))
    finish = stream.finish
    assert finish.prompt_tokens == stream.events[0].prompt_tokens
    assert finish.ttft_ms is not None and 0 < finish.ttft_ms <= finish.total_ms


def test_it_streams_deltas_that_join_into_the_full_decode(engine, demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)

    stream = run(engine, chat(max_new_tokens=30))

    assert stream.text == tokenizer.decode(stream.token_ids, skip_special_tokens=True)
    assert len(stream.token_ids) == stream.finish.completion_tokens == 30


def test_it_answers_like_transformers_generate(engine, demo_model):
    stream = run(engine, chat(max_new_tokens=20))

    assert stream.text == reference_text(demo_model.base_dir, max_new_tokens=20)


def test_it_renders_a_raw_prompt_as_is(engine, demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    request = GenerationRequest(id="raw", prompt="the river and", params=SamplingParams(max_new_tokens=3))

    stream = run(engine, request)

    assert stream.started.prompt_tokens == len(tokenizer("the river and").input_ids)
    assert stream.finish.completion_tokens == 3


def test_it_stops_at_max_new_tokens(engine):
    stream = run(engine, chat(max_new_tokens=5))

    assert stream.finish.reason == "length"
    assert stream.finish.completion_tokens == 5


def test_it_stops_when_the_model_ends_its_turn(engine):
    # With seed 0 the demo base model ends its greedy answer to QUESTION by itself (81 tokens).
    stream = run(engine, chat(max_new_tokens=200))

    assert stream.finish.reason == "stop"
    assert stream.finish.completion_tokens < 200
    assert stream.finish.completion_tokens == len(stream.token_ids) + 1  # the end token


def test_it_cuts_the_answer_before_a_stop_string(engine):
    full = run(engine, chat(max_new_tokens=20)).text
    stop = full[12:17]  # spans several tokens, so it arrives over several deltas
    expected = full[: full.index(stop)]

    stream = run(engine, chat(max_new_tokens=20, stop=(stop, "never appears")))

    assert stream.text == expected
    assert all(stop not in delta.text for delta in stream.deltas)
    assert stream.finish.reason == "stop"


def test_it_repeats_a_sampled_answer_for_the_same_seed(engine):
    first = run(engine, chat(temperature=1.0, top_p=0.9, seed=7, max_new_tokens=15))
    second = run(engine, chat(temperature=1.0, top_p=0.9, seed=7, max_new_tokens=15))
    other_seed = run(engine, chat(temperature=1.0, top_p=0.9, seed=8, max_new_tokens=15))

    assert first.token_ids == second.token_ids
    assert first.token_ids != other_seed.token_ids


def test_it_refuses_a_prompt_that_does_not_fit_the_context(engine):
    context = engine.base.max_positions
    stream = run(engine, chat(max_new_tokens=context))

    assert stream.failure.code == "context_too_long"
    assert str(context) in stream.failure.message
    assert stream.finish.reason == "error"
    assert stream.started is None and stream.deltas == []


def test_it_refuses_sampling_parameters_out_of_range(engine):
    stream = run(engine, chat(top_p=0.0))

    assert stream.failure.code == "invalid_request"
    assert stream.finish.reason == "error"


def test_it_refuses_a_request_id_that_is_already_running(engine):
    first, second = Stream(), Stream()
    request = chat(max_new_tokens=1000)
    engine.submit(request, first)
    engine.submit(request, second)

    assert second.wait().failure.code == "invalid_request"
    engine.cancel(request.id)
    assert first.wait().finish.reason == "cancelled"


def test_it_cancels_a_running_request_within_one_step(engine):
    stream = Stream()
    request = chat(max_new_tokens=1000)
    engine.submit(request, stream)
    assert stream.got_text.wait(10)

    engine.cancel(request.id)
    deltas_when_cancelled = len(stream.deltas)  # the step under way may still send one more
    stream.wait()

    assert stream.finish.reason == "cancelled"
    assert len(stream.deltas) <= deltas_when_cancelled + 1
    assert stream.finish.completion_tokens < 1000


def test_it_sends_nothing_after_a_cancelled_request_finishes(engine):
    stream = Stream()
    request = chat(max_new_tokens=1000)

    def cancel_after_two_deltas(event):
        stream(event)
        if isinstance(event, TextDelta) and event.index == 1:
            engine.cancel(request.id)

    engine.submit(request, cancel_after_two_deltas)
    stream.wait()
    run(engine, chat(max_new_tokens=3))  # the loop has moved on

    assert len(stream.deltas) == 2
    assert stream.finish.reason == "cancelled"
    engine.cancel(request.id)  # again, after the end: nothing happens


def test_it_ignores_a_cancel_for_an_unknown_request(engine):
    engine.cancel("no-such-request")

    assert run(engine, chat(max_new_tokens=2)).finish.reason == "length"


@pytest.fixture
def single_slot_engine(demo_model):
    """An engine that runs one request at a time and queues one more."""
    engine = BatchEngine(str(demo_model.base_dir), device="cpu", max_batch_size=1, max_queued=1)
    yield engine
    engine.close()


def test_it_finishes_a_cancelled_queued_request_without_starting_it(single_slot_engine):
    running, queued = Stream(), Stream()
    long_request, waiting_request = chat(max_new_tokens=1000), chat(max_new_tokens=5)
    single_slot_engine.submit(long_request, running)
    assert running.got_text.wait(10)
    single_slot_engine.submit(waiting_request, queued)

    single_slot_engine.cancel(waiting_request.id)

    assert queued.wait().events == [Finished("cancelled", 0, 0, None, queued.finish.total_ms)]
    assert not running.finished.is_set()
    single_slot_engine.cancel(long_request.id)
    running.wait()


def test_it_refuses_work_beyond_the_queue_limit(single_slot_engine):
    running, queued, refused = Stream(), Stream(), Stream()
    single_slot_engine.submit(chat(max_new_tokens=1000), running)
    assert running.got_text.wait(10)
    single_slot_engine.submit(chat(max_new_tokens=3), queued)

    single_slot_engine.submit(chat(max_new_tokens=3), refused)

    assert refused.wait().failure.code == "overloaded"
    assert refused.finish.reason == "error"
    single_slot_engine.close()
    assert running.wait().finish.reason == "cancelled"
    assert queued.wait().finish.reason == "cancelled"


def test_it_keeps_serving_when_a_sink_raises(engine):
    def broken_sink(event):
        raise RuntimeError("the client went away")

    engine.submit(chat(max_new_tokens=1000), broken_sink)

    assert run(engine, chat(max_new_tokens=3)).finish.reason == "length"


def test_it_refuses_new_work_once_closed(demo_model):
    engine = BatchEngine(str(demo_model.base_dir), device="cpu")
    engine.close()

    with pytest.raises(RuntimeError):
        engine.submit(chat(), Stream())
