"""Choosing the next token: penalties, logit bias and a grammar's mask shape the logits, then
greedy, or temperature with top_k and nucleus (top_p) sampling picks one.

Each request has its own `torch.Generator`, so a fixed seed gives the same answer however many
other requests share the engine. The order follows HF's and vLLM's: repetition penalty, then
OpenAI's presence and frequency penalties, then logit bias, then the grammar mask (last, so
nothing can bring back a token the grammar forbids), then temperature, top_k, top_p.
"""

from __future__ import annotations

import secrets
from collections import Counter

import torch

from inference.types import SamplingParams


class Sampler:
    def __init__(self, params: SamplingParams, prompt: list[int] = ()):
        self.params = params
        self.temperature = params.temperature
        self.top_p = params.top_p
        self.seed = params.seed if params.seed is not None else secrets.randbits(63)
        self._generator: torch.Generator | None = None
        self._counts: Counter[int] = Counter()  # the answer's tokens so far
        self._seen: set[int] = set(prompt) if params.repetition_penalty != 1.0 else set()

    def record(self, token_id: int) -> None:
        """The token chosen for this row (penalties count it from the next step on)."""
        self._counts[token_id] += 1
        self._seen.add(token_id)

    def __call__(self, logits: torch.Tensor, allowed: torch.Tensor | None = None) -> int:
        """Pick a token id from the logits of one position (a 1-D tensor over the vocabulary);
        `allowed`: the grammar's mask of tokens that may come next."""
        return self.choose(self.scores(logits, allowed))

    def scores(self, logits: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """The logits this row chooses from: penalised, biased, masked, then divided by the
        temperature (greedy: left as they are). Their log_softmax is what a request asking for
        log-probabilities is told; top_k and top_p only cut this distribution's tail."""
        if self.params.shapes_logits:
            logits = self._shaped(logits.float().clone(), allowed)
        if self.temperature == 0:
            return logits
        return logits.float() / self.temperature

    def choose(self, logits: torch.Tensor) -> int:
        """A token from `scores`: the most likely one, or a sample after top_k and top_p."""
        if self.temperature == 0:
            return int(torch.argmax(logits))
        if self.params.top_k:
            kept = min(self.params.top_k, logits.shape[-1])
            threshold = torch.topk(logits, kept).values[-1]
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            return self._sample_nucleus(probs)
        return int(torch.multinomial(probs, 1, generator=self._generator_for(probs.device)))

    def _shaped(self, logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        params = self.params
        if params.repetition_penalty != 1.0 and self._seen:
            seen = torch.tensor(sorted(self._seen), device=logits.device)
            values = logits[seen]
            logits[seen] = torch.where(
                values > 0, values / params.repetition_penalty, values * params.repetition_penalty
            )
        if (params.presence_penalty or params.frequency_penalty) and self._counts:
            ids = torch.tensor(list(self._counts), device=logits.device)
            counts = torch.tensor(
                list(self._counts.values()), dtype=logits.dtype, device=logits.device
            )
            logits[ids] -= params.frequency_penalty * counts + params.presence_penalty
        for token_id, bias in params.logit_bias:
            if token_id < logits.shape[-1]:
                logits[token_id] += bias
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        return logits

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
