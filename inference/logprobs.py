"""Token details for requests that ask for them (docs/ARCHITECTURE.md, "Log-probabilities").

A chosen token's log-probability is taken from the distribution it was chosen from: the
log_softmax of the row's processed logits (`Sampler.scores`: after penalties, logit bias, the
grammar mask and temperature; greedy rows at temperature 1; before top_k and top_p cut its
tail), as vLLM's V0 sampler and its `processed_logprobs` mode report (its V1 default reports
the raw distribution). A token the grammar forbids has -inf there, so alternatives are clamped to
FLOOR, as vLLM's OpenAI server does, to stay valid JSON. The prompt's log-probabilities
(LoRAX's `decoder_input_details`) are the model's raw ones: nothing samples the prompt.

Every step computes these for all the rows that ask at once (one log_softmax, one gather, one
top-k, one copy to the host); rows that do not ask are not part of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from inference.types import TokenInfo

FLOOR = -9999.0  # vLLM's stand-in for a log-probability of -inf
MAX_TOP_LOGPROBS = 20  # OpenAI's bound on top_logprobs


class TokenNamer:
    """Token texts and which tokens are special, for one tokenizer."""

    def __init__(self, tokenizer, stop_token_ids: frozenset[int]):
        self._tokenizer = tokenizer
        self._special = frozenset(tokenizer.all_special_ids) | stop_token_ids

    def info(self, token_id: int, logprob: float | None, top=(), text: bool = True) -> TokenInfo:
        """`text=False`: only a special token's text is decoded; the others' is left "" for
        the engine to set in context (it has the row's detokenizer)."""
        special = token_id in self._special
        decoded = self.text(token_id) if text or special else ""
        return TokenInfo(token_id, decoded, logprob, special, tuple(top))

    def text(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id], skip_special_tokens=False)


def chosen(
    namer: TokenNamer, scores: Sequence[torch.Tensor], tokens: Sequence[int], tops: Sequence[int]
) -> list[TokenInfo]:
    """Each row's chosen token with its log-probability under `scores` (that row's processed
    logits) and its `tops[i]` most likely alternatives; texts of special tokens only."""
    logprobs = torch.log_softmax(torch.stack([row.float() for row in scores]), dim=-1)
    ids = torch.tensor(tokens, device=logprobs.device)
    picked = logprobs.gather(1, ids[:, None])[:, 0].clamp(min=FLOOR).tolist()
    k = max(tops)
    top_values, top_ids = ([], [])
    if k:
        best = logprobs.topk(k, dim=-1)
        top_values, top_ids = best.values.clamp(min=FLOOR).tolist(), best.indices.tolist()
    infos = []
    for row, token_id in enumerate(tokens):
        top = [
            namer.info(top_ids[row][i], top_values[row][i], text=False) for i in range(tops[row])
        ]
        infos.append(namer.info(token_id, picked[row], top, text=False))
    return infos


def prompt(namer: TokenNamer, prompt_ids: list[int], logits: torch.Tensor) -> tuple[TokenInfo, ...]:
    """The prompt's tokens with the raw log-probability of each given the ones before it;
    `logits`: the prefill's logits at the prompt's positions [len(prompt_ids), vocab]."""
    ids = torch.tensor(prompt_ids[1:], device=logits.device)
    logits = logits[: len(ids)]  # the last position predicts the answer, not the prompt
    values = []
    # 256 positions at a time: a long prompt's whole log_softmax in float32 would be large.
    for start in range(0, len(ids), 256):
        rows = torch.log_softmax(logits[start : start + 256].float(), dim=-1)
        values += rows.gather(1, ids[start : start + 256, None])[:, 0].tolist()
    logprobs = [None] + [max(value, FLOOR) if not math.isnan(value) else None for value in values]
    return tuple(namer.info(t, lp) for t, lp in zip(prompt_ids, logprobs))
