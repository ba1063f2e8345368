"""LoRAX-compatible routes under /lorax (docs/PROTOCOL.md §3), for `lorax-client` and raw LoRAX
users: `POST /lorax` and `/lorax/` (the client posts to its base URL; LoRAX's root route),
`/lorax/generate`, `/lorax/generate_stream`, `GET /lorax/info`, `GET /lorax/health`. LoRAX's
OpenAI routes under /lorax/v1 are the OpenAI handlers themselves (chatsite/urls.py).

`inputs` goes to the model as a raw prompt (no chat template) and is recorded as a new
conversation of the key's user. `adapter_id` is an adapter slug; null or "" is the base model.
Every request asks the engine for token details (docs/ARCHITECTURE.md, "Log-probabilities"),
so each token is reported with its real id, log-probability, `special` and the text it added
(incrementally decoded, as LoRAX does: "" for a token that holds only part of a character), one
event (or one `details.tokens` entry) per token, the end token last, as LoRAX reports them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import aclosing

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatsite.adapters.selectors import base_model_id
from chatsite.chat.streams import envelopes
from chatsite.chat.transports import streaming
from chatsite.chat.transports.api_common import key_user, parse_body, retry_headers
from chatsite.chat.transports.request_params import (
    MAX_TOP_LOGPROBS,
    ApiParams,
    lorax_response_format,
    params_error,
)
from chatsite.chat.workers import model_limits
from chatsite.chat.workers.engine_holder import local_engine
from chatsite.errors import ChatError, field_error, status_of

VERSION = "patchbay-lorax-compat-1"
# Parameters LoRAX has that Patchbay does not implement (these, merged_adapters, truncate,
# typical_p, adapter_source other than "hub", and any unknown one) are refused, not ignored.
UNSUPPORTED_TRUE = ("watermark",)


class Parameters(BaseModel):
    # The client sends every field, nulls included; only the ones below do anything.
    model_config = ConfigDict(extra="allow")

    adapter_id: str | None = None
    do_sample: bool = False
    max_new_tokens: int | None = Field(default=None, ge=1)
    best_of: int | None = Field(default=None, ge=1, le=1)
    return_full_text: bool | None = False
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: list[str] = []
    temperature: float | None = Field(default=None, ge=0, le=2)  # 0: greedy, as LoRAX allows
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, gt=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    response_format: dict | None = None
    details: bool = True
    decoder_input_details: bool = False
    # The most likely tokens at each step (`alternative_tokens`); OpenAI's bound on top_logprobs.
    return_k_alternatives: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    ignore_eos_token: bool | None = False


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    inputs: str
    parameters: Parameters = Field(default_factory=Parameters)
    stream: bool = False


@csrf_exempt
@login_not_required
@require_POST
async def compat(request):
    """LoRAX's `/` route: what `lorax-client` calls. Answers an array unless streaming."""
    return await _generate(request, stream=None, as_array=True)


@csrf_exempt
@login_not_required
@require_POST
async def generate(request):
    return await _generate(request, stream=False, as_array=False)


@csrf_exempt
@login_not_required
@require_POST
async def generate_stream(request):
    return await _generate(request, stream=True, as_array=False)


@login_not_required
@require_GET
async def info(request):
    """Every field of LoRAX's `Info`; limits in tokens, as LoRAX gives them."""
    total = await asyncio.to_thread(model_limits.max_total_tokens)  # may read a config file
    device, dtype = await asyncio.to_thread(model_limits.device_and_dtype)
    return JsonResponse(
        {
            "model_id": base_model_id(),
            "model_sha": None,
            "model_dtype": dtype,
            "model_device_type": device,
            "model_pipeline_tag": None,
            "max_concurrent_requests": settings.MAX_LIVE_ANSWERS,  # per key's user
            "max_best_of": 1,
            "max_stop_sequences": 4,
            "max_input_length": total - 1,  # a prompt leaves room for one new token at least
            "max_total_tokens": total,
            "max_new_tokens": settings.MAX_NEW_TOKENS,  # ours; LoRAX has no such field
            # The router's scheduling knobs, as Patchbay's engine behaves: new rows join the
            # batch at every step, so nothing waits for a ratio or a token count.
            "waiting_served_ratio": 0.0,
            "max_batch_total_tokens": settings.ENGINE_MAX_BATCH_TOKENS,
            "max_waiting_tokens": 0,
            "validation_workers": 1,
            "eager_prefill": True,
            "version": VERSION,
            "sha": None,
            "docker_label": None,
            "request_logger_url": None,
        }
    )


@login_not_required
@require_GET
async def health(request):
    if settings.INFERENCE_MODE == "local":
        try:
            await asyncio.to_thread(local_engine)
        except ChatError:
            return _error(ChatError("unhealthy", "unhealthy"), 503, "healthcheck")
    return HttpResponse(status=200)


async def _generate(request, *, stream: bool | None, as_array: bool):
    try:
        await key_user(request)
        body = parse_body(request, GenerateRequest)
        streams = body.stream if stream is None else stream
        if streams and body.parameters.decoder_input_details:
            # LoRAX's own refusal: a stream's details have no place for the prompt's tokens.
            raise field_error(
                "parameters.decoder_input_details", "true is not supported when streaming tokens."
            )
        exchange, run = await streaming.start(
            user=request.user,
            conversation_id=None,
            content=body.inputs,
            adapter_slug=body.parameters.adapter_id or "",
            params=_params(body.parameters),
            raw_prompt=True,
        )
    except ChatError as err:
        return error_response(err)
    if streams:
        return streaming.sse_response(_events(body, exchange, request.auth.pk))
    events = await streaming.until_end(run, key_id=request.auth.pk)
    failure = streaming.error_of(events) or _incomplete(streaming.end_of(events))
    if failure is not None:
        return error_response(failure)
    answer = _answer(body, events)
    return JsonResponse(
        [answer] if as_array else answer,
        safe=False,
        headers=_headers(body, streaming.end_of(events)),
    )


def error_response(err: ChatError) -> JsonResponse:
    if err.code == "incomplete_generation":
        # LoRAX's own error type for an answer that did not end by itself (its status is 500;
        # ours is its generation-failure status, as for every server-side failure here).
        return _error(err, 424, "incomplete_generation")
    status = status_of(err)
    if status == 400:
        status = 422  # LoRAX's status for a request that does not validate
    error_type = {
        401: "authentication",
        404: "not_found",
        405: "validation",
        413: "validation",
        422: "validation",
        429: "overloaded",
    }.get(status, "generation")
    if err.code == "adapter_cache_full":
        status, error_type = 429, "overloaded"  # LoRAX has no 503: it says overloaded
    elif status >= 500:
        status = 424
    return _error(err, status, error_type)


def _error(err: ChatError, status: int, error_type: str) -> JsonResponse:
    return JsonResponse(
        {"error": err.message, "error_type": error_type}, status=status, headers=retry_headers(err)
    )


def _params(parameters: Parameters) -> ApiParams:
    for name, value in (parameters.model_extra or {}).items():
        if name == "adapter_source" and value in (None, "hub") or value is None:
            continue
        if name in UNSUPPORTED_TRUE:
            if value is False:
                continue
            raise ChatError("bad_request", f"Patchbay does not support {name}=true.")
        # Any other parameter (the ones LoRAX has that Patchbay lacks, or a typo) would be
        # ignored, so it is refused by name.
        raise ChatError(
            "bad_request", f"Patchbay does not support the parameter {name}; leave it out."
        )
    temperature = parameters.temperature
    if temperature is None:
        temperature = 1.0 if parameters.do_sample else 0.0  # LoRAX: greedy unless sampling
    if temperature > 0 and parameters.seed is None:
        # Chosen here, so that details.seed reports the seed really used, as LoRAX does.
        parameters.seed = secrets.randbits(63)
    if parameters.decoder_input_details and not parameters.details:
        raise field_error(
            "parameters.decoder_input_details",
            "the prompt's tokens are part of the details; ask for details: true as well.",
        )
    try:
        return ApiParams(
            max_tokens=parameters.max_new_tokens,
            temperature=temperature,
            top_p=parameters.top_p,
            seed=parameters.seed,
            stop=parameters.stop or None,
            ignore_eos=bool(parameters.ignore_eos_token),
            top_k=parameters.top_k,
            repetition_penalty=parameters.repetition_penalty,
            response_format=lorax_response_format(parameters.response_format),
            # Always: a token event carries its id and logprob even without `details`.
            logprobs=True,
            top_logprobs=parameters.return_k_alternatives or 0,
            prompt_logprobs=parameters.decoder_input_details,
        )
    except ValidationError as exc:
        raise params_error(exc, prefix="parameters.") from None


def _incomplete(end: dict) -> ChatError | None:
    """Anything but a natural end or a length limit (the token limit or the byte cap): the time
    cap, a Stop, a lost client. LoRAX's finish reasons have no word for those."""
    if end["reason"] in ("stop", "length"):
        return None
    return ChatError("incomplete_generation", f"The generation ended early ({end['reason']}).")


def _finish_reason(end: dict) -> str:
    """What ended it: the token limit (or the byte cap), a stop string, or else the end token
    (a JSON answer the grammar closed counts as ended by it, as LoRAX's grammars end)."""
    if end["reason"] == "length":
        return "length"
    return "stop_sequence" if end.get("stop_sequence") else "eos_token"


def _tokens(envelope: dict) -> list[dict]:
    """LoRAX tokens of a token envelope, or of the end envelope (the end token, a stop
    string's tokens: those that added nothing to the answer's text)."""
    return [_token(detail) for detail in envelope["payload"].get("tokens", ())]


def _token(detail: dict) -> dict:
    token = {
        "id": detail["id"],
        "text": detail["text"],
        "logprob": detail["logprob"],
        "special": detail["special"],
    }
    if "top" in detail:
        token["alternative_tokens"] = [
            {"id": alt["id"], "text": alt["text"], "logprob": alt["logprob"]} for alt in detail["top"]
        ]
    return token


def _prefill(end: dict) -> list[dict]:
    return [
        {"id": token["id"], "text": token["text"], "logprob": token["logprob"]}
        for token in end.get("prefill", ())
    ]


def _full_text(body: GenerateRequest, text: str) -> str:
    return body.inputs + text if body.parameters.return_full_text else text


def _answer(body: GenerateRequest, events: list[dict]) -> dict:
    end = streaming.end_of(events)
    details = None
    if body.parameters.details:
        listed = [e for e in events if e["type"] in ("inference.token", "inference.end")]
        details = {
            **_stream_details(body, end),
            "prefill": _prefill(end),
            "tokens": [token for envelope in listed for token in _tokens(envelope)],
            "best_of_sequences": None,
        }
    return {"generated_text": _full_text(body, envelopes.text_of(events)), "details": details}


def _stream_details(body: GenerateRequest, end: dict) -> dict:
    return {
        "finish_reason": _finish_reason(end),
        "prompt_tokens": end["usage"]["prompt_tokens"],
        "generated_tokens": end["usage"]["completion_tokens"],
        "seed": body.parameters.seed,
    }


async def _events(body: GenerateRequest, exchange, key_id: int):
    """One event per token; the last one also carries the whole text and the details. A token
    is held back until the next event says whether it was the last."""
    held = None
    parts = []
    async with aclosing(streaming.api_answer_events(exchange, key_id)) as events:
        async for envelope in events:
            kind = envelope["type"] if envelope else None
            if envelope is None:
                yield b": keep-alive\n\n"
            elif kind == "inference.token":
                parts.append(envelope["payload"]["text"])
                for token in _tokens(envelope):
                    if held is not None:
                        yield _stream_token(held)
                    held = token
            elif kind == "inference.error":
                err = ChatError(envelope["payload"]["code"], envelope["payload"]["message"])
                yield streaming.sse_data(json.loads(error_response(err).content))
                return
            elif kind == "inference.end":
                end = envelope["payload"]
                failure = _incomplete(end)
                if failure is not None:
                    yield streaming.sse_data(json.loads(error_response(failure).content))
                    return
                for token in _tokens(envelope):  # the end token, as LoRAX's last event
                    if held is not None:
                        yield _stream_token(held)
                    held = token
                # Nothing at all came (not even an end token): an empty special token.
                last = held or {"id": 0, "text": "", "logprob": 0.0, "special": True}
                yield streaming.sse_data(
                    {
                        "token": last,
                        "generated_text": _full_text(body, "".join(parts)),
                        "details": _stream_details(body, end) if body.parameters.details else None,
                    }
                )


def _stream_token(token: dict) -> bytes:
    return streaming.sse_data({"token": token, "generated_text": None, "details": None})


def _headers(body: GenerateRequest, end: dict) -> dict:
    total = end["timings"]["total_ms"] or 0.0
    generated = end["usage"]["completion_tokens"]
    return {
        "x-adapter-id": body.parameters.adapter_id or "",
        "x-model-id": base_model_id(),
        "x-prompt-tokens": str(end["usage"]["prompt_tokens"]),
        "x-generated-tokens": str(generated),
        "x-total-time": str(round(total)),
        "x-time-per-token": str(round(total / generated) if generated else 0),
        "x-time-to-first-token": str(round(end["timings"]["ttft_ms"] or 0)),
    }
