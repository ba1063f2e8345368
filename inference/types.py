"""Value objects shared by the engine and its callers (see docs/ARCHITECTURE.md, "Engine").

Callers describe work with `GenerationRequest`; the engine answers with a stream of events
delivered to a sink callback: `Started`, then `TextDelta`s, then exactly one `Finished`
(preceded by one `Failed` when the reason is "error").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Union

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter the caller is allowed to use: its registry name and local directory."""

    name: str
    path: str


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # keep going past end-of-sequence tokens (benchmarks, LoRAX's option)
    top_k: int = 0  # sample among the k most likely tokens; 0: all
    # OpenAI's penalties, over the answer's own tokens: minus presence once a token has
    # appeared, minus frequency times its count.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # HF/TGI/LoRAX's, over the prompt and the answer: a seen token's logit divided by it
    # (multiplied when negative); 1 is none.
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    grammar: str | None = None  # an llguidance grammar the answer must follow (inference.grammar)
    # Token details (docs/ARCHITECTURE.md, "Log-probabilities"): each chosen token's id, text
    # and log-probability, with its `top_logprobs` most likely alternatives; `prompt_logprobs`
    # adds the prompt's tokens and theirs. Rows that ask nothing pay nothing.
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: bool = False

    @property
    def shapes_logits(self) -> bool:
        """Whether anything but temperature and nucleus changes this row's choice."""
        return bool(
            self.top_k or self.presence_penalty or self.frequency_penalty or self.logit_bias
            or self.repetition_penalty != 1.0 or self.grammar
        )


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One generation. Either `messages` (rendered with the tokenizer's chat template) or a
    raw `prompt` string is given; `adapter=None` means the plain base model.
    `continue_final_message` extends the last (assistant) turn instead of opening a new one."""

    id: str
    messages: tuple[ChatTurn, ...] = ()
    prompt: str | None = None
    adapter: AdapterRef | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    continue_final_message: bool = False


@dataclass(frozen=True)
class Started:
    prompt_tokens: int


@dataclass(frozen=True)
class TokenInfo:
    """One token as reported to a request that asked for log-probabilities."""

    id: int
    # What it added to the answer, decoded in context ("" while a character is incomplete); an
    # alternative: what it would have added; a special token: its own text ("</s>").
    text: str
    logprob: float | None  # None only for a prompt's first token (nothing came before it)
    special: bool = False  # a special token (an end token): no part of the answer's text
    top: tuple[TokenInfo, ...] = ()  # the most likely tokens at this step, most likely first


@dataclass(frozen=True)
class TextDelta:
    text: str  # never empty, never a broken character
    index: int  # 0, 1, 2, ... per request
    token_ids: tuple[int, ...] = ()  # the tokens whose text completed in this delta
    tokens: tuple[TokenInfo, ...] = ()  # those tokens' details, when the request asked


@dataclass(frozen=True)
class Failed:
    code: str  # stable machine code, e.g. "unknown_adapter", "context_too_long", "internal"
    message: str  # a sentence for a person


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None  # from submit to the first delta; None when no text came
    total_ms: float
    # When the request asked: the chosen tokens no delta carried (the end token, a stop
    # string's tokens), and the prompt's tokens (`prompt_logprobs`).
    tokens: tuple[TokenInfo, ...] = ()
    prompt: tuple[TokenInfo, ...] = ()
    stop_sequence: bool = False  # "stop" because one of the request's stop strings appeared


Event = Union[Started, TextDelta, Failed, Finished]
EventSink = Callable[[Event], None]


class Engine(Protocol):
    """What the web tier and the worker need from any engine implementation.

    `submit` never blocks on model work; `sink` is called from the engine's own thread and
    must return quickly. `cancel` is idempotent and takes effect within one decode step.
    """

    def submit(self, request: GenerationRequest, sink: EventSink) -> None: ...

    def cancel(self, request_id: str) -> None: ...

    def close(self) -> None: ...
