"""Crafted configs, headers and weights: each refused with a sentence naming what is wrong, fast.

The hostile patterns here backtrack for minutes under Python's `re` while holding the GIL (the
server froze until kill -9); the time-bound check runs in a child process, so that on code that
still uses `re` the test fails on its timeout instead of freezing the test run.
"""

import asyncio
import json
import math
import subprocess
import sys
import textwrap

import pytest

from inference.errors import AdapterError
from inference.validation import validate_adapter_dir
from tests.adapters.conftest import CONFIG, LIMITS, WEIGHTS
from tests.e2e.servers import ROOT

# Every choice matches every character twice over, so `re` tries 2**len(name) ways before it
# gives up on a module name without a "!": minutes for "model.layers.0.self_attn.k_proj".
BACKTRACKING = r"([\w.]|[\w.])+!"


def rejection(crafted, base_model) -> str:
    with pytest.raises(AdapterError) as caught:
        validate_adapter_dir(crafted.path, base_model=base_model, limits=LIMITS)
    assert caught.value.code == "invalid_adapter"
    return caught.value.message


def timed_validation(path, base_model) -> dict:
    """Validate in a child process: what it said and how long the check itself took."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from inference.errors import AdapterError
        from inference.validation import Limits, base_layout, validate_adapter_dir
        base_layout({str(base_model)!r})  # build the layer tree first: only the check is timed
        began = time.monotonic()
        try:
            report = validate_adapter_dir({str(path)!r}, base_model={str(base_model)!r},
                                          limits=Limits(max_rank=64, max_bytes=2 * 1024**3))
            said = {{"accepted": True, "modules": report.modules}}
        except AdapterError as error:
            said = {{"accepted": False, "message": error.message}}
        said["seconds"] = time.monotonic() - began
        print(json.dumps(said))
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail("the check did not end within 150 s: the pattern is backtracking")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- patterns that backtrack ------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, accepted",
    [
        ({"target_modules": r".*\.(q_proj|v_proj)|" + BACKTRACKING}, True),
        ({"target_modules": BACKTRACKING, "rank_pattern": {BACKTRACKING: 4}}, False),
    ],
    ids=["target-matching-the-adapters-layers", "target-and-rank_pattern-matching-nothing"],
)
def test_it_checks_a_backtracking_pattern_within_seconds(craft, base_model, changes, accepted):
    crafted = craft().set(**changes)

    said = timed_validation(crafted.path, base_model)

    assert said["seconds"] < 5, said
    assert said["accepted"] is accepted, said
    if not accepted:
        assert "matches no layer" in said["message"]


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"target_modules": r"(?=.*q_proj).*"}, "target_modules"),
        ({"target_modules": r"(q)\1_proj"}, "target_modules"),
        ({"target_modules": "(q|v_proj"}, "target_modules"),
        ({"target_modules": "(q_proj){1001}"}, "repeat more than 1000"),
        ({"rank_pattern": {r"(?<=self_attn\.)q_proj": 8}}, "rank_pattern key"),
        ({"rank_pattern": {"[q_proj": 8}}, "rank_pattern key"),
        ({"alpha_pattern": {r"(v)\1": 16}}, "alpha_pattern key"),
        ({"exclude_modules": r"(?!q).*"}, "exclude_modules"),
        ({"target_modules": ["q_proj", "v_proj"], "layers_to_transform": [0],
          "layers_pattern": r"(?<=model\.)layers"}, "layers_pattern"),
    ],
)
def test_it_refuses_a_pattern_it_cannot_match_in_linear_time(craft, base_model, changes, words):
    message = rejection(craft().set(**changes), base_model)

    assert words in message


# --- settings of the wrong kind ---------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"base_model_name_or_path": 5}, "base_model_name_or_path must be text"),
        ({"base_model_name_or_path": {"path": "/etc"}}, "base_model_name_or_path must be text"),
        ({"base_model_name_or_path": ["a", "b"]}, "base_model_name_or_path must be text"),
        ({"revision": 3}, "revision must be text"),
        ({"rank_pattern": ["q_proj", 8]}, "rank_pattern must map layer names"),
        ({"rank_pattern": {"q_proj": "8"}}, "rank_pattern['q_proj']"),
        ({"rank_pattern": {"q_proj": 8.5}}, "rank_pattern['q_proj']"),
        ({"rank_pattern": {"q_proj": True}}, "rank_pattern['q_proj']"),
        ({"rank_pattern": {"q_proj": -8}}, "rank_pattern['q_proj']"),
        ({"alpha_pattern": {"q_proj": "16"}}, "alpha_pattern['q_proj'] must be a number"),
        ({"alpha_pattern": {"q_proj": [16]}}, "alpha_pattern['q_proj'] must be a number"),
        ({"alpha_pattern": {"q_proj": 1e300}}, "alpha_pattern['q_proj'] is 1e+300"),
        ({"alpha_pattern": "q_proj=16"}, "alpha_pattern must map layer names"),
        ({"lora_alpha": True}, "lora_alpha must be a number"),
        ({"lora_alpha": 10**400}, "lora_alpha is"),
        ({"r": 10**100}, "ADAPTER_MAX_RANK"),
        ({"r": "8"}, "The rank (r)"),
        ({"target_modules": [1, 2]}, "target_modules must list layer names"),
        ({"target_modules": {"q_proj": True}}, "target_modules must be a pattern or a list"),
        ({"exclude_modules": 5}, "exclude_modules must be a pattern or a list"),
        ({"layers_to_transform": "0"}, "layers_to_transform must be a layer number"),
        ({"layers_to_transform": [0.5]}, "layers_to_transform must be a layer number"),
        ({"target_modules": ["q_proj", "v_proj"], "layers_pattern": 7, "layers_to_transform": [0]},
         "layers_pattern must be"),
        ({"layers_to_transform": [0]}, "cannot be used when target_modules is a pattern"),
        ({"target_modules": ["q_proj", "v_proj"], "layers_pattern": "layers"},
         "without layers_to_transform"),
        ({"use_rslora": "yes"}, "use_rslora must be true or false"),
        ({"inference_mode": 1}, "inference_mode must be true or false"),
        ({"lora_dropout": "0.1"}, "lora_dropout must be a number from 0 to 1"),
        ({"lora_dropout": 7}, "lora_dropout must be a number from 0 to 1"),
        ({"peft_type": ["LORA"]}, "not a LoRA adapter"),
        ({"task_type": {"CAUSAL_LM": 1}}, "trained for task"),
    ],
)
def test_it_names_the_setting_a_crafted_value_breaks(craft, base_model, changes, words):
    crafted = craft()
    if "target_modules" not in changes and "layers_to_transform" in changes:
        changes = {"target_modules": r".*\.(q_proj|v_proj)", **changes}
    message = rejection(crafted.set(**changes), base_model)

    assert words in message


@pytest.mark.parametrize(
    "raw, words",
    [
        ('"lora_alpha": NaN', "holds NaN"),
        ('"lora_alpha": -Infinity', "holds -Infinity"),
        ('"lora_alpha": 1e999', "too large to be finite at lora_alpha"),
        ('"alpha_pattern": {"q_proj": 1e999}', "at alpha_pattern.q_proj"),
        ('"lora_dropout": Infinity', "holds Infinity"),
        ('"r": ' + "9" * 5000, "not valid JSON"),
        ('"notes": ' + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('"notes": ' + "[" * 20 + "]" * 20, "more than 16 levels deep"),
    ],
    ids=["nan", "minus-infinity", "overflowing-float", "overflow-in-a-pattern", "infinity",
         "5000-digit-integer", "100000-deep", "20-deep"],
)
def test_it_refuses_json_that_breaks_the_code_after_it(craft, base_model, raw, words):
    crafted = craft()
    text = json.dumps(crafted.config)
    (crafted.path / CONFIG).write_text(text[:-1] + ", " + raw + "}")

    assert words in rejection(crafted, base_model)


# --- the safetensors header ---------------------------------------------------------------------


def rewrite_header(crafted, change) -> None:
    """Rewrite the weights file's JSON header by hand (`change` gets the parsed header and
    returns the text to write), keeping the tensor bytes as they were."""
    data = (crafted.path / WEIGHTS).read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    text = change(header).encode()
    (crafted.path / WEIGHTS).write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length :])


def first_entry(header) -> str:
    return next(key for key in header if key != "__metadata__")


def with_first(field, value):
    def change(header):
        header[first_entry(header)][field] = value
        return json.dumps(header)

    return change


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda h: json.dumps({**h, "__metadata__": {"format": float("nan")}}), "holds NaN"),
        (lambda h: json.dumps({**h, "__metadata__": {"format": 5}}), "__metadata__ must map names to text"),
        (lambda h: json.dumps({**h, "__metadata__": ["pt"]}), "__metadata__ must map names to text"),
        (lambda h: json.dumps(h)[:-1] + ', "__metadata__": {"x": 1e999}}', "too large to be finite"),
        (lambda h: json.dumps(h)[:-1] + ', "__metadata__": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
        (with_first("dtype", ["F32"]), "malformed"),
        (with_first("dtype", {"F32": 1}), "malformed"),
        (with_first("shape", [8.0, 64.0]), "malformed"),
        (with_first("shape", [True, 64]), "malformed"),
        (with_first("shape", "8x64"), "malformed"),
        (with_first("data_offsets", [0, float("inf")]), "holds Infinity"),
        (with_first("data_offsets", [0, 10**30]), "damaged"),
        (with_first("data_offsets", [0]), "malformed"),
        (lambda h: json.dumps({**h, first_entry(h): 5}), "malformed"),
    ],
    ids=["nan-metadata", "number-metadata", "list-metadata", "overflowing-metadata",
         "deep-metadata", "list-dtype", "object-dtype", "float-shape", "boolean-shape",
         "text-shape", "infinite-offset", "huge-offset", "one-offset", "entry-not-an-object"],
)
def test_it_refuses_a_crafted_safetensors_header(craft, base_model, change, words):
    crafted = craft()
    rewrite_header(crafted, change)

    assert words in rejection(crafted, base_model)


# --- non-finite weights -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_it_refuses_weights_that_are_not_finite(craft, base_model, value):
    crafted = craft()
    weights = crafted.weights
    key = sorted(weights)[0]
    weights[key][0, 0] = value
    crafted.weights = weights

    message = rejection(crafted, base_model)

    assert key in message and "NaN or infinite" in message



# --- off the event loop -------------------------------------------------------------------------


async def test_it_refuses_to_run_on_an_event_loop_and_runs_in_a_worker_thread(craft, base_model):
    crafted = craft()

    with pytest.raises(RuntimeError, match="not on the event loop"):
        validate_adapter_dir(crafted.path, base_model=base_model, limits=LIMITS)
    report = await asyncio.to_thread(
        validate_adapter_dir, crafted.path, base_model=base_model, limits=LIMITS
    )

    assert report.rank == 8
