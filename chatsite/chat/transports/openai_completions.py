"""OpenAI's legacy `POST /v1/completions` (also `/lorax/v1/completions`, as LoRAX serves it):
a raw `prompt` string, no chat template (docs/ARCHITECTURE.md, "HTTP APIs").

Like LoRAX's `inputs`, the prompt is recorded as a new conversation of the key's user and goes
to the model as it is. Errors, ids and usage are the chat endpoint's (`openai_api`).
"""

from __future__ import annotations

from contextlib import aclosing

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatsite.adapters.selectors import base_model_id
from chatsite.chat.models import Conversation
from chatsite.chat.streams import envelopes
from chatsite.chat.transports import openai_api, streaming
from chatsite.chat.transports.api_common import json_object, key_user, validated
from chatsite.chat.transports.request_params import ApiParams
from chatsite.errors import ChatError, field_error

# Fields of OpenAI's CreateCompletionRequest that Patchbay does not implement. Their neutral
# value (what asks for nothing) is accepted, as clients such as LangChain send it every time;
# anything else is refused by name.
NEUTRAL = {
    "best_of": 1,
    "echo": False,
    "frequency_penalty": 0,
    "logit_bias": {},
    "presence_penalty": 0,
    "suffix": None,
    "user": None,
}


class LegacyCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    prompt: str
    stream: bool = False
    stream_options: openai_api.StreamOptions | None = None
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for this endpoint
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    ignore_eos: bool = False  # vLLM's extension, as on the chat endpoint
    # The chosen tokens' log-probabilities and this many alternatives (OpenAI's bound: 5).
    logprobs: int | None = Field(default=None, ge=0, le=5)


@csrf_exempt
@login_not_required
@require_POST
async def completions(request):
    try:
        user = await key_user(request)
        body = _parse(request)
        exchange, run = await streaming.start(
            user=user,
            conversation_id=None,
            content=body.prompt,
            adapter_slug="" if body.model == base_model_id() else body.model,
            params=_params(body),
            raw_prompt=True,
            source=Conversation.Source.OPENAI,
        )
    except ChatError as err:
        if err.code == "unknown_adapter":
            err = openai_api.model_not_found(body.model)
        return openai_api.error_response(err)
    if body.stream:
        return streaming.sse_response(_chunks(body, exchange, request.auth.pk))
    events = await streaming.until_end(run, key_id=request.auth.pk)
    failure = streaming.error_of(events)
    if failure is not None:
        return openai_api.error_response(failure)
    end = streaming.end_of(events)
    return JsonResponse(
        {
            **_head(body, exchange),
            "choices": [
                _choice(envelopes.text_of(events), _finish(end), _logprobs(body, events))
            ],
            "usage": openai_api.usage(end),
        }
    )


def _parse(request) -> LegacyCompletionRequest:
    data = json_object(request)
    for name, neutral in NEUTRAL.items():
        if data.get(name, neutral) not in (neutral, None):
            raise field_error(name, "Patchbay does not implement it; leave it out.")
        data.pop(name, None)
    if isinstance(data.get("prompt"), list):
        raise field_error("prompt", "send one prompt as a string (lists are not supported).")
    return validated(LegacyCompletionRequest, data)


def _params(body: LegacyCompletionRequest) -> ApiParams:
    try:
        return ApiParams(
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=([body.stop] if isinstance(body.stop, str) else body.stop) or None,
            ignore_eos=body.ignore_eos,
            logprobs=body.logprobs is not None,
            top_logprobs=body.logprobs or 0,
        )
    except ValidationError as exc:  # GenerationParams' bounds on stop sequences
        raise field_error("stop", f"{exc.errors()[0]['msg']}.") from None


async def _chunks(body: LegacyCompletionRequest, exchange, key_id: int):
    """text_completion chunks, the finish, usage if asked for, then [DONE]; after an error only
    [DONE], as on the chat endpoint."""
    head = _head(body, exchange)
    failed = False
    offset = 0  # text_offset goes on from chunk to chunk
    async with aclosing(streaming.api_answer_events(exchange, key_id)) as events:
        async for envelope in events:
            kind = envelope["type"] if envelope else None
            if envelope is None:
                yield b": keep-alive\n\n"
            elif kind == "inference.token":
                text = envelope["payload"]["text"]
                logprobs = _logprobs(body, [envelope], offset)
                offset += len(text)
                yield streaming.sse_data({**head, "choices": [_choice(text, None, logprobs)]})
            elif kind == "inference.error":
                failed = True
                yield openai_api.error_event(envelope)
            elif kind == "inference.end" and not failed:
                end = envelope["payload"]
                yield streaming.sse_data({**head, "choices": [_choice("", _finish(end))]})
                if body.stream_options and body.stream_options.include_usage:
                    usage = openai_api.usage(end)
                    yield streaming.sse_data({**head, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"


def _head(body: LegacyCompletionRequest, exchange) -> dict:
    answer = exchange.assistant_message
    return {
        "id": f"cmpl-{answer.pk}",
        "object": "text_completion",
        "created": int(answer.created_at.timestamp()),
        "model": body.model,
    }


def _choice(text: str, finish_reason: str | None, logprobs: dict | None = None) -> dict:
    # `logprobs` is required (nullable) by OpenAI's schema.
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def _logprobs(body: LegacyCompletionRequest, events: list[dict], offset: int = 0) -> dict | None:
    """The legacy shape: parallel lists of the text's tokens (the end token is not listed),
    their log-probabilities, {alternative: logprob} maps and character offsets in the text."""
    if body.logprobs is None:
        return None
    tokens = envelopes.tokens_of(events)
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token["text"])
    return {
        "tokens": [token["text"] for token in tokens],
        "token_logprobs": [token["logprob"] for token in tokens],
        "top_logprobs": [
            {alt["text"]: alt["logprob"] for alt in token.get("top", ())} for token in tokens
        ],
        "text_offset": offsets,
    }


def _finish(end: dict) -> str:
    return openai_api.FINISH.get(end["reason"], "stop")
