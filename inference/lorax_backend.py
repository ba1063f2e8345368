"""An `Engine` that streams from a LoRAX server (INFERENCE_MODE=lorax; docs/ARCHITECTURE.md,
"LoRAX mode").

It keeps the `Engine` contract, so the web tier's `GenerationRun` drives it exactly as it drives
the in-process engine: the same envelopes, checkpoints, Stop, disconnect policy and caps. Each
request is one `lorax-client` `AsyncClient.generate_stream` call run as a task on the caller's
event loop; `cancel` cancels that task, which closes the upstream HTTP stream (LoRAX then stops
generating for it). LoRAX takes a prompt string, so chat messages go through the base model's
chat template here (`render_chat`), the same rendering the local engine uses.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from lorax import AsyncClient
from lorax import errors as lorax_errors

from inference.errors import InferenceError
from inference.types import (
    EventSink,
    Failed,
    Finished,
    GenerationRequest,
    Started,
    TextDelta,
    TokenInfo,
)

# LoRAX's error classes, as our stable codes.
_CODES = {
    lorax_errors.NotFoundError: "unknown_adapter",
    lorax_errors.ValidationError: "invalid_request",
    lorax_errors.BadRequestError: "invalid_request",
    lorax_errors.UnprocessableEntityError: "invalid_request",
    lorax_errors.OverloadedError: "overloaded",
    lorax_errors.RateLimitExceededError: "engine_unavailable",
    lorax_errors.ShardNotReadyError: "engine_unavailable",
    lorax_errors.ShardTimeoutError: "timeout",
}


class LoraxEngine:
    def __init__(self, base_url: str, *, api_key: str | None = None, render=None, timeout=600):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = AsyncClient(base_url, headers=headers, timeout=timeout)
        self._render = render  # GenerationRequest -> prompt string (the chat template)
        self._tasks: dict[str, asyncio.Task] = {}

    def submit(self, request: GenerationRequest, sink: EventSink) -> None:
        """Call from the event loop that should run the stream (the web tier's)."""
        task = asyncio.get_running_loop().create_task(self._stream(request, sink))
        self._tasks[request.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request.id, None))

    def cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def _stream(self, request: GenerationRequest, sink: EventSink) -> None:
        started = time.perf_counter()
        first: float | None = None
        index = prompt_tokens = completion_tokens = 0
        reason = "error"
        stop_sequence = False
        pending: list[TokenInfo] = []  # upstream tokens not yet sent (no text of their own yet)
        try:
            prompt = request.prompt if request.prompt is not None else self._render(request)
            async for response in self._client.generate_stream(prompt, **_parameters(request)):
                if first is None:
                    first = time.perf_counter()
                    sink(Started(prompt_tokens=0))
                token = response.token
                if request.params.logprobs:  # LoRAX's own token details, passed on
                    pending.append(TokenInfo(token.id, token.text, token.logprob, token.special))
                if token.text and not token.special:
                    ids = tuple(info.id for info in pending) or (token.id,)
                    sink(TextDelta(token.text, index, ids, tuple(pending)))
                    pending = []
                    index += 1
                completion_tokens += 1
                if response.details is not None:
                    reason = response.details.finish_reason.value
                    prompt_tokens = response.details.prompt_tokens
                    completion_tokens = response.details.generated_tokens
            stop_sequence = reason == "stop_sequence"
            reason = reason if reason in ("stop", "length") else "stop"
        except asyncio.CancelledError:
            reason = "cancelled"  # Stop, a client gone or a cap: the upstream stream is closed
        except InferenceError as error:
            sink(Failed(error.code, error.message))
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            sink(Failed("engine_unavailable", f"The LoRAX server could not be reached ({error})."))
        except Exception as error:  # noqa: BLE001 -- lorax-client's errors carry LoRAX's sentence
            code = _CODES.get(type(error), "internal")
            sink(Failed(code, f"LoRAX: {error}" if str(error) else "LoRAX failed."))
        ttft = None if first is None else (first - started) * 1000
        total = (time.perf_counter() - started) * 1000
        sink(
            Finished(
                reason, prompt_tokens, completion_tokens, ttft, total, tokens=tuple(pending),
                stop_sequence=reason == "stop" and stop_sequence,
            )
        )


def _parameters(request: GenerationRequest) -> dict:
    params = request.params
    # LoRAX takes a JSON schema, not llguidance's grammar, and has no OpenAI penalties or
    # logit bias: refused rather than dropped.
    for name, unsupported in (
        ("response_format/tool_choice", params.grammar is not None),  # a forced call is a grammar
        ("presence_penalty", bool(params.presence_penalty)),
        ("frequency_penalty", bool(params.frequency_penalty)),
        ("logit_bias", bool(params.logit_bias)),
        # LoRAX streams no alternatives, and no prompt tokens in a stream.
        ("top_logprobs/return_k_alternatives", bool(params.top_logprobs)),
        ("decoder_input_details", params.prompt_logprobs),
    ):
        if unsupported:
            raise InferenceError(
                "unsupported_parameter",
                f"Field “{name}”: not available while answers come from a LoRAX server.",
            )
    sampled = params.temperature > 0
    return {
        "adapter_id": request.adapter.name if request.adapter else None,
        "max_new_tokens": params.max_new_tokens,
        "do_sample": sampled,
        "temperature": params.temperature if sampled else None,
        "top_p": params.top_p if sampled and params.top_p < 1 else None,
        "seed": params.seed,
        "stop_sequences": list(params.stop) or None,
        "ignore_eos_token": params.ignore_eos,
        "top_k": params.top_k if sampled and params.top_k else None,
        "repetition_penalty": (
            None if params.repetition_penalty == 1.0 else params.repetition_penalty
        ),
    }
