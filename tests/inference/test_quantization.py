"""An int8 base model: its Linear weights quantized per row, the adapters' updates in float and
exactly those of the float model; off unless asked for, and unknown kinds refused by name."""

import pytest
import torch
from torch import nn

from inference.engine import BatchEngine
from inference.errors import InferenceError
from inference.lora import LoraLayers, new_rows_version
from inference.model import load_base_model
from inference.quantization import Int8Linear
from tests.inference.helpers import chat, run


def adapted(linear: nn.Linear, a: torch.Tensor, b: torch.Tensor):
    """The layer inside a one-layer model, with the adapter in slot 1."""
    model = nn.Sequential(linear)
    layers = LoraLayers(model, slots=2)
    layers.write(1, {"0": (a, b)})
    return model, layers.context


def test_it_adds_an_adapters_update_exactly_as_on_the_float_base():
    torch.manual_seed(0)
    float_layer = nn.Linear(64, 48, bias=False)
    a, b = torch.randn(8, 64) * 0.1, torch.randn(48, 8) * 0.1
    x = torch.randn(3, 2, 64)
    deltas = []
    for layer in (float_layer, Int8Linear(float_layer)):
        model, context = adapted(layer, a, b)
        outputs = []
        for slot in (1, 0):
            context.use(torch.tensor([slot] * 3), new_rows_version(), uses_adapters=bool(slot))
            outputs.append(model(x))
        deltas.append(outputs[0] - outputs[1])
    torch.testing.assert_close(deltas[1], deltas[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(deltas[0], x @ a.T @ b.T)


def test_it_keeps_each_weight_within_half_a_step_of_its_row_scale():
    torch.manual_seed(1)
    linear = nn.Linear(32, 16)
    quantized = Int8Linear(linear)
    assert quantized.weight.dtype == torch.int8
    step = quantized.scales.float()[:, None]
    error = (quantized.dequantized() - linear.weight).abs()
    assert bool((error <= step * 0.501).all())
    x = torch.randn(4, 32)
    relative = (quantized(x) - linear(x)).norm() / linear(x).norm()
    assert relative < 0.02


def test_it_refuses_an_unknown_quantization_by_name(demo_model):
    with pytest.raises(InferenceError, match="int4"):
        load_base_model(str(demo_model.base_dir), device="cpu", quantization="int4")


def test_it_is_off_unless_asked_for(demo_model):
    base = load_base_model(str(demo_model.base_dir), device="cpu")
    assert base.quantization == "none"
    assert not any(isinstance(m, Int8Linear) for m in base.model.modules())


def test_it_answers_with_adapters_on_an_int8_base_close_to_the_float_one(demo_model, adapters):
    float_base = load_base_model(str(demo_model.base_dir), device="cpu")
    int8_base = load_base_model(str(demo_model.base_dir), device="cpu", quantization="int8")
    assert isinstance(int8_base.model.get_output_embeddings(), Int8Linear)
    ids = torch.tensor([float_base.encode(chat(max_new_tokens=1))])
    with torch.inference_mode():
        expected, got = float_base.model(ids).logits, int8_base.model(ids).logits
    # Teacher-forced: the next token the quantized model would pick, position by position.
    agreement = (expected.argmax(-1) == got.argmax(-1)).float().mean()
    assert agreement >= 0.9
    engine = BatchEngine(str(demo_model.base_dir), device="cpu", quantization="int8")
    try:
        stream = run(engine, chat(adapters["demo-poet"], max_new_tokens=8, ignore_eos=True))
    finally:
        engine.close()
    assert stream.finish.reason == "length"
    assert stream.finish.completion_tokens == 8
