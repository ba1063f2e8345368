"""Continuous batching: rows for different adapters share each forward pass, join at step
boundaries, leave at once, and each answers exactly as it would alone through plain PEFT."""

import json
import random
import threading
from pathlib import Path

import pytest

from inference.demo_words import WORDS
from inference.engine import BatchEngine
from inference.types import (
    Finished,
    GenerationRequest,
    SamplingParams,
    Started,
    TextDelta,
)
from tests.inference.helpers import PeftReference, Stream, chat, make_test_adapters, run


@pytest.fixture(scope="module")
def test_adapters(demo_model, tmp_path_factory):
    return make_test_adapters(demo_model.base_dir, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="module")
def peft_reference(demo_model, test_adapters):
    return PeftReference(demo_model.base_dir, test_adapters)


@pytest.fixture(scope="module")
def small_cache_engine(demo_model):
    """Three adapter slots for five test adapters, so random mixes also evict and reload."""
    engine = BatchEngine(str(demo_model.base_dir), device="cpu", max_batch_size=6, max_adapters=3)
    yield engine
    engine.close()


def random_plan(rng: random.Random, adapters: dict) -> list[dict]:
    """Requests with random adapters (or none), prompt lengths, lengths and join times."""
    choices = [None, *adapters.values()]
    plan = []
    for index in range(rng.randint(5, 8)):
        plan.append(
            {
                "prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))),
                "adapter": rng.choice(choices),
                "max_new_tokens": rng.randint(3, 24),
                # Join at the start, or once an earlier request has streamed some deltas.
                "after": None if index == 0 or rng.random() < 0.3 else rng.randrange(index),
                "at_delta": rng.randint(0, 8),
            }
        )
    return plan


def run_plan(engine, plan: list[dict]) -> list[Stream]:
    streams = [Stream() for _ in plan]
    submitted = [False] * len(plan)
    lock = threading.Lock()

    def submit(index):
        with lock:
            if submitted[index]:
                return
            submitted[index] = True
        item = plan[index]
        request = GenerationRequest(
            id=f"plan-{id(plan)}-{index}",
            prompt=item["prompt"],
            adapter=item["adapter"],
            params=SamplingParams(temperature=0.0, max_new_tokens=item["max_new_tokens"]),
        )
        engine.submit(request, sink_for(index))

    def sink_for(index):
        def sink(event):
            streams[index](event)
            if not isinstance(event, (TextDelta, Finished)):
                return
            for later, item in enumerate(plan):
                reached = isinstance(event, Finished) or event.index >= item["at_delta"]
                if item["after"] == index and reached:
                    submit(later)

        return sink

    for index, item in enumerate(plan):
        if item["after"] is None:
            submit(index)
    for stream in streams:
        stream.wait(60)
    return streams


@pytest.mark.parametrize("seed", range(4))
def test_it_answers_every_row_like_plain_peft_alone(small_cache_engine, peft_reference, test_adapters, seed):
    plan = random_plan(random.Random(seed), test_adapters)

    streams = run_plan(small_cache_engine, plan)

    tokenizer = peft_reference.tokenizer
    for item, stream in zip(plan, streams):
        expected = peft_reference.completion(item["prompt"], item["adapter"], item["max_new_tokens"])
        assert stream.finish.completion_tokens == len(expected), item
        assert stream.text == tokenizer.decode(expected, skip_special_tokens=True), item


def test_it_runs_rows_for_several_adapters_in_one_forward_pass(engine, test_adapters):
    forwards = []
    hook = engine.base.model.register_forward_hook(lambda module, args, output: forwards.append(1))
    streams = [Stream() for _ in range(3)]
    try:
        for name, stream in zip(("r2-qv", "r16-all", "r4-mlp"), streams):
            engine.submit(chat(test_adapters[name], max_new_tokens=10, ignore_eos=True), stream)
        for stream in streams:
            stream.wait()
    finally:
        hook.remove()

    assert sum(stream.finish.completion_tokens for stream in streams) == 30
    # One request at a time would take 30 passes; a batch takes one per step, plus prefills.
    assert len(forwards) <= 14


def test_it_repeats_a_seeded_sample_whatever_shares_the_batch(engine, adapters):
    sampled = {"temperature": 1.0, "top_p": 0.9, "seed": 11, "max_new_tokens": 15}
    alone = run(engine, chat(adapters["demo-poet"], **sampled))

    neighbours = [Stream() for _ in range(3)]
    for index, stream in enumerate(neighbours):
        engine.submit(chat(adapters["demo-chef"], temperature=0.8, seed=index, max_new_tokens=20), stream)
    together = run(engine, chat(adapters["demo-poet"], **sampled))
    for stream in neighbours:
        stream.wait()

    assert together.token_ids == alone.token_ids


def test_it_applies_each_rows_stop_strings_to_that_row_only(engine):
    full = run(engine, chat(max_new_tokens=20)).text
    stop = full[12:17]
    cut, whole = Stream(), Stream()

    engine.submit(chat(max_new_tokens=20, stop=(stop,)), cut)
    engine.submit(chat(max_new_tokens=20), whole)

    assert cut.wait().text == full[: full.index(stop)]
    assert whole.wait().text == full


def test_it_lets_the_others_go_on_when_one_row_is_cancelled(engine):
    alone = run(engine, chat(max_new_tokens=25)).text
    cancelled, other = Stream(), Stream()
    long_request = chat(max_new_tokens=1000, ignore_eos=True)
    engine.submit(long_request, cancelled)
    engine.submit(chat(max_new_tokens=25), other)
    assert cancelled.got_text.wait(10)

    engine.cancel(long_request.id)

    assert cancelled.wait().finish.reason == "cancelled"
    assert other.wait().text == alone


@pytest.fixture
def two_row_engine(demo_model):
    engine = BatchEngine(str(demo_model.base_dir), device="cpu", max_batch_size=2, max_batch_tokens=200)
    yield engine
    engine.close()


def recording(log: list, name: str, stream: Stream):
    def sink(event):
        if isinstance(event, (Started, Finished)):
            log.append((name, type(event).__name__))
        stream(event)

    return sink


def test_it_keeps_a_request_waiting_while_the_batch_is_full(two_row_engine):
    log, streams = [], {name: Stream() for name in ("first", "second", "third")}
    for name, tokens in (("first", 5), ("second", 40), ("third", 5)):
        two_row_engine.submit(chat(max_new_tokens=tokens, ignore_eos=True), recording(log, name, streams[name]))
    for stream in streams.values():
        stream.wait()

    assert log.index(("third", "Started")) > log.index(("first", "Finished"))
    assert log.index(("third", "Started")) < log.index(("second", "Finished"))


def test_it_keeps_a_request_waiting_while_the_token_budget_is_spent(two_row_engine):
    log, streams = [], {name: Stream() for name in ("big", "small")}
    prompt_tokens = run(two_row_engine, chat(max_new_tokens=1)).started.prompt_tokens
    big = chat(max_new_tokens=200 - prompt_tokens, ignore_eos=True)  # the whole budget
    two_row_engine.submit(big, recording(log, "big", streams["big"]))
    two_row_engine.submit(chat(max_new_tokens=3), recording(log, "small", streams["small"]))
    for stream in streams.values():
        stream.wait()

    assert log == [("big", "Started"), ("big", "Finished"), ("small", "Started"), ("small", "Finished")]


def test_it_refuses_a_request_larger_than_the_token_budget(two_row_engine):
    stream = run(two_row_engine, chat(max_new_tokens=500))

    assert stream.failure.code == "context_too_long"
    assert "token budget of 200" in stream.failure.message


def test_it_scales_like_peft_with_rslora_and_alpha_patterns(engine, demo_model, tmp_path):
    refs = make_test_adapters(demo_model.base_dir, tmp_path)
    ref = refs["r8-attn"]
    config_path = Path(ref.path) / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(use_rslora=True, alpha_pattern={"q_proj": 3, "layers.1.self_attn.v_proj": 40})
    config_path.write_text(json.dumps(config))
    reference = PeftReference(demo_model.base_dir, {ref.name: ref})
    prompt = "the river and the stone"

    params = SamplingParams(temperature=0.0, max_new_tokens=20)
    stream = run(engine, GenerationRequest(id="scaled", prompt=prompt, adapter=ref, params=params))

    expected = reference.completion(prompt, ref, 20)
    assert stream.text == reference.tokenizer.decode(expected, skip_special_tokens=True)
