"""LoRA adapters in the engine: one per request, swapped per step, and refused when unusable."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.types import AdapterRef
from tests.inference.helpers import Stream, chat, reference_text, run


def test_it_gives_each_adapter_its_own_answer(engine, adapters):
    base = run(engine, chat())
    poet = run(engine, chat(adapters["demo-poet"]))
    chef = run(engine, chat(adapters["demo-chef"]))
    poet_again = run(engine, chat(adapters["demo-poet"]))

    assert len({base.text, poet.text, chef.text}) == 3
    assert poet_again.text == poet.text


def test_it_answers_like_peft_on_transformers(engine, adapters, demo_model):
    stream = run(engine, chat(adapters["demo-terse"], max_new_tokens=15))

    assert stream.text == reference_text(
        demo_model.base_dir, adapter_path=adapters["demo-terse"].path, max_new_tokens=15
    )


def test_it_still_answers_with_the_plain_base_model_once_adapters_are_loaded(engine, adapters, demo_model):
    run(engine, chat(adapters["demo-chef"]))

    assert run(engine, chat(max_new_tokens=15)).text == reference_text(demo_model.base_dir, max_new_tokens=15)


def test_it_runs_requests_for_different_adapters_side_by_side(engine, adapters):
    alone = {slug: run(engine, chat(adapters[slug], max_new_tokens=25)).text for slug in ("demo-poet", "demo-chef")}
    order = []
    streams = {}
    for slug in alone:
        stream = streams[slug] = Stream()

        def sink(event, stream=stream, slug=slug):
            order.append(slug)
            stream(event)

        engine.submit(chat(adapters[slug], max_new_tokens=25), sink)

    together = {slug: stream.wait().text for slug, stream in streams.items()}

    assert together == alone
    switches = sum(1 for before, after in zip(order, order[1:]) if before != after)
    assert switches > 2, "the two requests should take turns"


def test_it_refuses_an_adapter_that_is_not_there(engine, tmp_path):
    stream = run(engine, chat(AdapterRef("ghost", str(tmp_path / "ghost"))))

    assert stream.failure.code == "unknown_adapter"
    assert "ghost" in stream.failure.message
    assert stream.finish.reason == "error"
    assert stream.started is None and stream.deltas == []


def test_it_refuses_pickle_weights_without_unpickling_them(engine, adapters, tmp_path, monkeypatch):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(f"{adapters['demo-poet'].path}/adapter_config.json", pickled)
    torch.save(load_file(f"{adapters['demo-poet'].path}/adapter_model.safetensors"), pickled / "adapter_model.bin")
    loads = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(args))

    stream = run(engine, chat(AdapterRef("pickled", str(pickled))))

    assert stream.failure.code == "invalid_adapter"
    assert "safetensors" in stream.failure.message
    assert stream.deltas == []
    assert loads == []


def test_it_refuses_an_adapter_without_a_config(engine, adapters, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(f"{adapters['demo-poet'].path}/adapter_model.safetensors", bare)

    stream = run(engine, chat(AdapterRef("bare", str(bare))))

    assert stream.failure.code == "unknown_adapter"


@pytest.mark.parametrize(
    "config_text",
    ["{not json", json.dumps({"peft_type": "PROMPT_TUNING"}), json.dumps({"peft_type": "LORA", "init_lora_weights": "pissa"})],
    ids=["unreadable", "not-lora", "rewrites-base-weights"],
)
def test_it_refuses_an_adapter_with_a_bad_config(engine, adapters, tmp_path, config_text):
    broken = tmp_path / "broken"
    shutil.copytree(adapters["demo-poet"].path, broken)
    (broken / "adapter_config.json").write_text(config_text)

    stream = run(engine, chat(AdapterRef("broken", str(broken))))

    assert stream.failure.code == "invalid_adapter"
    assert stream.finish.reason == "error"


def test_it_refuses_an_adapter_trained_for_another_base_model(engine, adapters, tmp_path):
    base_answer = run(engine, chat()).text
    foreign = tmp_path / "foreign"
    shutil.copytree(adapters["demo-poet"].path, foreign)
    weights = load_file(foreign / "adapter_model.safetensors")
    wider = {key: torch.zeros(value.shape[0], 96) if ".lora_A." in key else value for key, value in weights.items()}
    save_file(wider, foreign / "adapter_model.safetensors")

    stream = run(engine, chat(AdapterRef("foreign", str(foreign))))

    assert stream.failure.code == "invalid_adapter"
    assert "not trained for this base model" in stream.failure.message
    assert run(engine, chat()).text == base_answer


def crafted_copy(adapters, tmp_path, **changes):
    crafted = tmp_path / "crafted"
    shutil.copytree(adapters["demo-poet"].path, crafted)
    config = json.loads((crafted / "adapter_config.json").read_text())
    (crafted / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return AdapterRef("crafted", str(crafted))


def test_it_loads_an_adapter_with_a_backtracking_pattern_without_stalling(engine, adapters, tmp_path):
    # Under Python's re this key takes minutes per module name, holding the GIL: the engine
    # thread, and every answer with it, stopped. RE2 finds in no time that it matches nothing.
    poet = run(engine, chat(adapters["demo-poet"], max_new_tokens=10)).text
    crafted = crafted_copy(adapters, tmp_path, alpha_pattern={r"([\w.]|[\w.])+!": 1})

    assert run(engine, chat(crafted, max_new_tokens=10)).text == poet


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"alpha_pattern": {"q_proj": "16"}}, "alpha_pattern['q_proj'] must be a number"),
        ({"alpha_pattern": {"(?=q)": 16}}, "alpha_pattern key"),
        ({"lora_alpha": None}, "lora_alpha must be a number"),
        ({"target_modules": 7}, "target_modules"),
    ],
)
def test_it_refuses_a_crafted_setting_at_load_naming_it(engine, adapters, tmp_path, changes, words):
    stream = run(engine, chat(crafted_copy(adapters, tmp_path, **changes)))

    assert stream.failure.code == "invalid_adapter"
    assert words in stream.failure.message


def test_it_refuses_weights_that_are_not_finite_at_load(engine, adapters, tmp_path):
    base_answer = run(engine, chat()).text
    crafted = crafted_copy(adapters, tmp_path)
    weights = load_file(f"{crafted.path}/adapter_model.safetensors")
    key = sorted(weights)[0]
    weights[key][0, 0] = float("nan")
    save_file(weights, f"{crafted.path}/adapter_model.safetensors")

    stream = run(engine, chat(crafted))

    assert stream.failure.code == "invalid_adapter"
    assert "NaN or infinite" in stream.failure.message
    assert stream.deltas == []
    assert run(engine, chat()).text == base_answer
