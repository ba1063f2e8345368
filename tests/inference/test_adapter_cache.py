"""The adapter cache: loads on demand, evicts the least recently used, pins, preloads, counts."""

import json
import shutil

import pytest

from inference.engine import BatchEngine
from inference.errors import AdapterError
from inference.types import AdapterRef
from tests.inference.helpers import Stream, chat, make_test_adapters, run


@pytest.fixture(scope="module")
def test_adapters(demo_model, tmp_path_factory):
    return make_test_adapters(demo_model.base_dir, tmp_path_factory.mktemp("adapters"))


@pytest.fixture
def make_engine(demo_model):
    engines = []

    def make(**settings):
        engines.append(BatchEngine(str(demo_model.base_dir), device="cpu", **settings))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()


def test_it_loads_an_adapter_on_first_use_then_hits(make_engine, adapters):
    engine = make_engine()
    run(engine, chat(adapters["demo-poet"]))
    run(engine, chat(adapters["demo-poet"]))
    run(engine, chat())

    stats = engine.adapter_cache_stats()
    assert (stats["misses"], stats["hits"], stats["loads"], stats["evictions"]) == (1, 1, 1, 0)
    assert stats["load_ms"] > 0
    assert stats["loaded"] == ["demo-poet"] and stats["bytes"] > 0


def test_it_evicts_the_least_recently_used_adapter_when_slots_run_out(make_engine, test_adapters):
    engine = make_engine(max_adapters=2)
    for name in ("r2-qv", "r8-attn", "r2-qv", "r4-mlp"):
        run(engine, chat(test_adapters[name]))

    stats = engine.adapter_cache_stats()
    assert stats["loaded"] == ["r2-qv", "r4-mlp"]
    assert stats["evictions"] == 1


def test_it_evicts_to_stay_within_the_byte_budget(make_engine, test_adapters):
    probe = make_engine()
    probe.preload(test_adapters["r16-all"])
    budget = probe.adapter_cache_stats()["bytes"] + 1  # room for the big one, not for two
    engine = make_engine(adapter_cache_bytes=budget)

    run(engine, chat(test_adapters["r16-all"]))
    run(engine, chat(test_adapters["r8-attn"]))

    stats = engine.adapter_cache_stats()
    assert stats["loaded"] == ["r8-attn"] and stats["bytes"] <= budget


def test_it_answers_the_same_after_an_eviction_and_reload(make_engine, test_adapters):
    engine = make_engine(max_adapters=1)
    first = run(engine, chat(test_adapters["r8-attn"], max_new_tokens=20)).text
    run(engine, chat(test_adapters["r4-mlp"]))

    again = run(engine, chat(test_adapters["r8-attn"], max_new_tokens=20)).text

    assert again == first
    assert engine.adapter_cache_stats()["loads"] == 3


def test_it_never_evicts_a_pinned_adapter(make_engine, test_adapters):
    engine = make_engine(max_adapters=2)
    engine.preload(test_adapters["r32-ko"], pin=True)
    for name in ("r2-qv", "r8-attn", "r4-mlp"):
        run(engine, chat(test_adapters[name]))

    stats = engine.adapter_cache_stats()
    assert stats["pinned"] == ["r32-ko"]
    assert "r32-ko" in stats["loaded"] and stats["evictions"] == 2


def test_it_serves_a_preloaded_adapter_without_loading_it_again(make_engine, test_adapters):
    engine = make_engine()
    engine.preload(test_adapters["r2-qv"], pin=False)

    run(engine, chat(test_adapters["r2-qv"]))

    stats = engine.adapter_cache_stats()
    assert (stats["loads"], stats["hits"], stats["misses"]) == (1, 1, 0)
    assert stats["pinned"] == []


def test_it_refuses_an_adapter_when_pinned_ones_fill_every_slot(make_engine, test_adapters):
    engine = make_engine(max_adapters=1)
    engine.preload(test_adapters["r2-qv"])

    stream = run(engine, chat(test_adapters["r8-attn"]))

    assert stream.failure.code == "adapter_cache_full"
    assert run(engine, chat(test_adapters["r2-qv"])).finish.reason == "length"


def test_it_evicts_an_adapter_on_request(make_engine, test_adapters):
    engine = make_engine()
    engine.preload(test_adapters["r2-qv"])

    assert engine.evict("r2-qv") is True
    assert engine.evict("r2-qv") is False
    assert engine.adapter_cache_stats()["loaded"] == []
    run(engine, chat(test_adapters["r2-qv"]))
    assert engine.adapter_cache_stats()["loads"] == 2


def test_it_keeps_a_request_waiting_while_every_slot_is_in_use(make_engine, test_adapters):
    engine = make_engine(max_adapters=1)
    alone = run(engine, chat(test_adapters["r4-mlp"], max_new_tokens=8)).text
    busy, waiting = Stream(), Stream()
    busy_request = chat(test_adapters["r2-qv"], max_new_tokens=1000, ignore_eos=True)
    engine.submit(busy_request, busy)
    assert busy.got_text.wait(10)
    engine.submit(chat(test_adapters["r4-mlp"], max_new_tokens=8), waiting)

    assert not waiting.finished.wait(0.5)
    assert waiting.started is None
    engine.cancel(busy_request.id)
    assert waiting.wait().text == alone


def test_it_refuses_an_adapter_above_the_maximum_rank(make_engine, test_adapters):
    engine = make_engine(adapter_max_rank=8)

    stream = run(engine, chat(test_adapters["r16-all"]))

    assert stream.failure.code == "invalid_adapter"
    assert "rank 16" in stream.failure.message and "ADAPTER_MAX_RANK" in stream.failure.message
    assert run(engine, chat(test_adapters["r8-attn"])).finish.reason == "length"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"target_modules": ["q_proj", "qkv_proj"]}, "qkv_proj"),
        ({"use_dora": True}, "use_dora"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ],
    ids=["missing-target", "dora", "modules-to-save"],
)
def test_it_refuses_a_config_this_base_cannot_serve(make_engine, test_adapters, tmp_path, change, words):
    broken = tmp_path / "broken"
    shutil.copytree(test_adapters["r2-qv"].path, broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, **change}))
    engine = make_engine()

    stream = run(engine, chat(AdapterRef("broken", str(broken))))

    assert stream.failure.code == "invalid_adapter"
    assert words in stream.failure.message
    assert engine.adapter_cache_stats()["loaded"] == []


def test_it_reports_a_bad_adapter_from_preload(make_engine, tmp_path):
    engine = make_engine()

    with pytest.raises(AdapterError) as error:
        engine.preload(AdapterRef("ghost", str(tmp_path / "ghost")))

    assert error.value.code == "unknown_adapter"
