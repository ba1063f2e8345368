"""Batched LoRA layers: each row gets its own adapter's update, padded ranks change nothing."""

import torch
from torch import nn

from inference.lora import LoraLayers, new_rows_version


def factors(rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rank, 6, generator=generator), torch.randn(5, rank, generator=generator)


def test_it_adds_each_rows_own_adapter_update():
    model = nn.Sequential(nn.Linear(6, 5))
    plain = model[0]
    layers = LoraLayers(model, slots=4)
    a1, b1 = factors(2, 1)
    a3, b3 = factors(7, 3)  # a larger rank arriving later pads every slot
    layers.write(1, {"0": (a1, b1)})
    layers.write(3, {"0": (a3, b3)})
    x = torch.randn(4, 3, 6)
    slots = torch.tensor([1, 0, 3, 1])

    layers.context.use(slots, new_rows_version(), uses_adapters=True)
    result = model(x)

    expected = plain(x) + torch.stack([x[0] @ a1.T @ b1.T, 0 * x[1, :, :5], x[2] @ a3.T @ b3.T, x[3] @ a1.T @ b1.T])
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(result[1], plain(x[1]), rtol=0, atol=0)


def test_it_gathers_again_when_a_slot_is_rewritten():
    model = nn.Sequential(nn.Linear(6, 5))
    layers = LoraLayers(model, slots=2)
    layers.write(1, {"0": factors(2, 1)})
    x = torch.randn(1, 1, 6)
    layers.context.use(torch.tensor([1]), new_rows_version(), uses_adapters=True)
    before = model(x)

    layers.write(1, {"0": factors(2, 2)})

    assert not torch.allclose(model(x), before)
    layers.write(1, {})
    torch.testing.assert_close(model(x), model[0].base(x), rtol=0, atol=0)
