"""A quantized base model: int8 weight-only Linear layers, the adapters staying in float.

See docs/ARCHITECTURE.md, "Engine" (quantized base). Each Linear of the base model (lm_head
included; the embeddings stay float) keeps its weights as int8 with one float scale per output
row (symmetric, absmax / 127), and multiplies through torch's own CPU kernel
`aten._weight_int8pack_mm`, which reads a quarter of the bytes a float32 product reads. That
kernel is fast for bfloat16 activations only (for float32 ones it falls back to a path about
100 times slower, docs/BENCHMARKS.md), so a layer's input is rounded to bfloat16 for the
product and its output returned in the model's dtype. The batched LoRA path wraps these layers
like float ones and adds its float update to their output, so an adapter's delta is computed
exactly as on the float model.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.errors import InferenceError

QUANTIZATIONS = ("none", "int8")


class Int8Linear(nn.Linear):
    """A Linear whose `weight` is an int8 buffer [out, in] with float `scales` [out]."""

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate a float weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dtype = linear.weight.dtype
        weight, scales = quantize_rows(linear.weight.detach())
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        result = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        result = result.to(self.dtype).reshape(*x.shape[:-1], self.out_features)
        return result if self.bias is None else result + self.bias

    def dequantized(self) -> torch.Tensor:
        """The float weight this layer stands for (tests, drift measurements)."""
        return self.weight.to(self.dtype) * self.scales.to(self.dtype)[:, None]


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weights and one bfloat16 scale per row (the kernel's), each weight rounded to the
    nearest of the 255 symmetric levels that scale makes."""
    weight = weight.float()
    scales = (weight.abs().amax(dim=1).clamp(min=1e-12) / 127).to(torch.bfloat16)
    levels = torch.round(weight / scales.float()[:, None]).clamp(-127, 127)
    return levels.to(torch.int8), scales


def quantize_base(model: nn.Module, quantization: str, device: torch.device) -> None:
    """Replace the model's Linear layers in place ("none": leave it as it is)."""
    check_quantization(quantization, device)
    if quantization == "none":
        return
    # A tied lm_head gets int8 weights of its own; the embeddings keep the float ones.
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, Int8Linear(child))


def check_quantization(quantization: str, device: torch.device) -> None:
    if quantization not in QUANTIZATIONS:
        raise InferenceError(
            "invalid_request",
            f"Unknown base quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}.",
        )
    if quantization == "int8" and device.type != "cpu":
        raise InferenceError(
            "invalid_request", "The int8 base quantization runs on the CPU only."
        )
