"""Choosing the next token: greedy, or temperature and nucleus (top_p) sampling.

Each request has its own `torch.Generator`, so a fixed seed gives the same answer however many
other requests share the engine.
"""

from __future__ import annotations

import secrets

import torch

from inference.types import SamplingParams


class Sampler:
    def __init__(self, params: SamplingParams):
        self.temperature = params.temperature
        self.top_p = params.top_p
        self.seed = params.seed if params.seed is not None else secrets.randbits(63)
        self._generator: torch.Generator | None = None

    def __call__(self, logits: torch.Tensor) -> int:
        """Pick a token id from the logits of one position (a 1-D tensor over the vocabulary)."""
        if self.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            return self._sample_nucleus(probs)
        return int(torch.multinomial(probs, 1, generator=self._generator_for(probs.device)))

    def _sample_nucleus(self, probs: torch.Tensor) -> int:
        """Sample among the most likely tokens whose probabilities first add up to top_p."""
        sorted_probs, order = torch.sort(probs, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= self.top_p, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=self._generator_for(probs.device))
        return int(order[choice])

    def _generator_for(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator
