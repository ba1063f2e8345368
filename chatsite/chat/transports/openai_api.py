"""OpenAI-compatible `POST /v1/chat/completions`, `GET /v1/models` and `GET /v1/models/{id}`
(docs/PROTOCOL.md §2); the legacy `/v1/completions` is `openai_completions.py`.

`model` is an adapter's slug, or the base model's id for the plain base model. Each call is
recorded as a new conversation of the key's user, so it shows up in the chat history and its
partial text is saved if the client goes away.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatsite.adapters.selectors import adapters_usable_by, base_model_id
from chatsite.chat.conversations import services
from chatsite.chat.streams import envelopes
from chatsite.chat.transports import streaming
from chatsite.chat.transports.api_common import key_user, parse_body, retry_headers
from chatsite.chat.transports.openai_tools import (
    Tool,
    ToolCall,
    ToolUse,
    ToolStream,
    assistant_message,
    tool_use,
    transcript,
)
from chatsite.chat.transports.request_params import (
    MAX_TOP_LOGPROBS,
    ApiParams,
    openai_response_format,
    params_error,
    refuse_unsupported,
)
from chatsite.errors import ChatError, field_error, status_of

# An answer cut by the server's byte cap (`length`) or time cap (`timeout`) was cut short, never
# a clean stop. Anything else ended early (a Stop, a client gone): "stop", with the text kept.
FINISH = {"stop": "stop", "length": "length", "timeout": "length"}
# The most choices (`n`) one request may ask for: each is a row of the same batch.
MAX_CHOICES = 4


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    # null only in an assistant turn that made calls (openai_tools.transcript checks)
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # who spoke: a tool turn's must be its call's function; other turns show it to the model
    # as "name: text" (openai_tools.transcript)
    name: str | None = Field(default=None, min_length=1, max_length=64)

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    # Known fields are checked strictly (a string is not a number); OpenAI fields Patchbay
    # does not implement are refused by name (request_params.OPENAI_UNSUPPORTED), and other
    # unknown ones are ignored, as OpenAI-compatible servers commonly do.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    ignore_eos: bool = False  # vLLM's extension (`extra_body`): run to the token limit
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, int | float] | None = None
    response_format: dict | None = None
    # vLLM's extensions (`extra_body`); top_k -1 is vLLM's "all".
    top_k: int | None = Field(default=None, ge=-1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None

    def tool_use(self) -> ToolUse:
        return tool_use(self.tools, self.tool_choice, self.parallel_tool_calls)

    def params(self, use: ToolUse) -> ApiParams:
        refuse_unsupported(self.model_extra or {})
        response_format = openai_response_format(self.response_format)
        if use.active:
            if response_format is not None and response_format.type != "text":
                raise field_error(
                    "response_format",
                    "cannot be combined with tools; leave it out, or send tool_choice “none”.",
                )
            if self.logprobs:
                raise field_error(
                    "logprobs",
                    "cannot be combined with tools yet; leave it out, or send tool_choice “none”.",
                )
            response_format = use.response_format()
        if self.top_logprobs and not self.logprobs:
            raise field_error("top_logprobs", "needs “logprobs”: true as well.")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return ApiParams(
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop or None,
            ignore_eos=self.ignore_eos,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias=self.logit_bias,
            top_k=None if self.top_k == -1 else self.top_k,
            repetition_penalty=self.repetition_penalty,
            response_format=response_format,
            logprobs=bool(self.logprobs),
            top_logprobs=self.top_logprobs or 0,
        )


@csrf_exempt
@login_not_required
@require_POST
async def chat_completions(request):
    try:
        user = await key_user(request)
        body = parse_body(request, CompletionRequest)
        use = body.tool_use()
        turns = _turns(body, use)
        started = await streaming.start_all(
            services.transcript_exchanges_start,
            user=user,
            turns=turns,
            adapter_slug=_adapter_slug(body.model),
            params=_params(body, use),
            n=body.n or 1,
        )
    except ChatError as err:
        if err.code == "unknown_adapter":
            err = model_not_found(body.model)
        return error_response(err)
    exchanges = [exchange for exchange, _ in started]
    if body.stream:
        return streaming.sse_response(_chunks(body, use, exchanges, request.auth.pk))
    answers = await asyncio.gather(
        *(streaming.until_end(run, key_id=request.auth.pk) for _, run in started)
    )
    for events in answers:
        failure = streaming.error_of(events)
        if failure is not None:
            return error_response(failure)
    return JsonResponse(_completion(body, use, exchanges, answers))


@login_not_required
@require_GET
async def models(request):
    try:
        user = await key_user(request)
    except ChatError as err:
        return error_response(err)
    data = [_model(model_id) for model_id in await _model_ids(user)]
    return JsonResponse({"object": "list", "data": data})


@login_not_required
@require_GET
async def model(request, model_id: str):
    """One Model object; an adapter the key may not use is as unknown as a missing one."""
    try:
        user = await key_user(request)
        if model_id not in await _model_ids(user):
            raise model_not_found(model_id)
    except ChatError as err:
        return error_response(err)
    return JsonResponse(_model(model_id))


def model_not_found(model_id: str) -> ChatError:
    return ChatError(
        "model_not_found",
        f"The model “{model_id}” does not exist or you may not use it; "
        "GET /v1/models lists yours.",
        param="model",
    )


async def _model_ids(user) -> list[str]:
    slugs = await sync_to_async(
        lambda: list(adapters_usable_by(user).values_list("slug", flat=True))
    )()
    return [base_model_id(), *slugs]


def error_response(err: ChatError) -> JsonResponse:
    status = status_of(err)
    error = {"message": err.message, "type": _error_type(status), "code": err.code}
    body = {"error": {**error, "param": err.param}}
    return JsonResponse(body, status=status, headers=retry_headers(err))


# --- request ------------------------------------------------------------------------------------
def _turns(body: CompletionRequest, use: ToolUse) -> list[tuple[str, str]]:
    turns = transcript(body.messages, use)
    size = sum(len(text) for _, text in turns)
    if size > settings.MAX_PROMPT_CHARS:
        raise ChatError(
            "context_too_long",
            f"The messages are {size} characters long together; the limit is "
            f"{settings.MAX_PROMPT_CHARS}.",
        )
    return turns


def _params(body: CompletionRequest, use: ToolUse) -> ApiParams:
    try:
        return body.params(use)
    except ValidationError as exc:  # GenerationParams' own bounds (stop sequences, logit_bias)
        raise params_error(exc) from None


def _adapter_slug(model: str) -> str:
    return "" if model == base_model_id() else model


# --- answers ------------------------------------------------------------------------------------
def _completion(body: CompletionRequest, use: ToolUse, exchanges, answers) -> dict:
    return {
        "id": _completion_id(exchanges[0]),
        "object": "chat.completion",
        "created": _created(exchanges[0]),
        "model": body.model,
        "choices": [
            _choice(body, use, index, exchange, events)
            for index, (exchange, events) in enumerate(zip(exchanges, answers))
        ],
        "usage": _usage_of([streaming.end_of(events) for events in answers]),
    }


def _choice(body: CompletionRequest, use: ToolUse, index: int, exchange, events) -> dict:
    # `refusal` and `logprobs` are required (nullable) by OpenAI's schema.
    message = assistant_message(use, envelopes.text_of(events), exchange.assistant_message.pk)
    return {
        "index": index,
        "message": message,
        "logprobs": _logprobs(body, events),
        "finish_reason": finish_reason(streaming.end_of(events), called="tool_calls" in message),
    }


def finish_reason(end: dict, called: bool = False) -> str:
    """OpenAI's finish_reason of an answer: "tool_calls" for one that ended as calls."""
    reason = FINISH.get(end["reason"], "stop")
    return "tool_calls" if called and reason == "stop" else reason


async def _chunks(body: CompletionRequest, use: ToolUse, exchanges, key_id: int):
    """chat.completion.chunk events, the choices' interleaved as they come (`index` tells
    them apart), then usage if asked for, then [DONE]. After an error only [DONE] follows: a
    finish chunk would read as an answer that ended well. With tools each choice's deltas are
    its `openai_tools.ToolStream`'s (calls as tool_calls deltas, or text)."""
    chunk = _chunk_maker(body, exchanges[0])
    for index in range(len(exchanges)):
        yield streaming.sse_data(chunk({"role": "assistant", "content": ""}, index=index))
    failed = False
    tools = [ToolStream(use, e.assistant_message.pk) if use.active else None for e in exchanges]
    ends: list[dict] = []
    streams = [streaming.api_answer_events(exchange, key_id) for exchange in exchanges]
    async with aclosing(_merged(streams)) as events:
        async for index, envelope in events:
            kind = envelope["type"] if envelope else None
            if envelope is None:
                yield b": keep-alive\n\n"
            elif kind == "inference.token" and tools[index] is not None:
                for delta in tools[index].push(envelope["payload"]["text"]):
                    yield streaming.sse_data(chunk(delta, index=index))
            elif kind == "inference.token":
                content = {"content": envelope["payload"]["text"]}
                logprobs = _logprobs(body, [envelope])
                yield streaming.sse_data(chunk(content, index=index, logprobs=logprobs))
            elif kind == "inference.error":
                failed = True
                yield error_event(envelope)
            elif kind == "inference.end" and not failed:
                ends.append(envelope["payload"])
                deltas, called = tools[index].end() if tools[index] else ([], False)
                for delta in deltas:
                    yield streaming.sse_data(chunk(delta, index=index))
                reason = finish_reason(envelope["payload"], called=called)
                yield streaming.sse_data(chunk({}, reason, index=index))
    if ends and not failed and body.stream_options and body.stream_options.include_usage:
        yield streaming.sse_data(chunk(None, usage=_usage_of(ends)))
    yield b"data: [DONE]\n\n"


_ENDED = object()


async def _merged(streams):
    """(index, envelope) from several answers' event streams, in the order they come."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream) -> None:
        try:
            async with aclosing(stream):
                async for envelope in stream:
                    await queue.put((index, envelope))
            await queue.put((index, _ENDED))
        except Exception as error:  # raised where the merged stream is read
            await queue.put((index, error))

    pumps = [asyncio.create_task(pump(index, stream)) for index, stream in enumerate(streams)]
    try:
        running = len(pumps)
        while running:
            index, envelope = await queue.get()
            if isinstance(envelope, Exception):
                raise envelope
            if envelope is _ENDED:
                running -= 1
            else:
                yield index, envelope
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def error_event(envelope: dict) -> bytes:
    """An engine error as the `data: {"error": …}` event OpenAI's SDK raises on."""
    err = ChatError(envelope["payload"]["code"], envelope["payload"]["message"])
    return streaming.sse_data(json.loads(error_response(err).content))


def _chunk_maker(body, exchange):
    base = {
        "id": _completion_id(exchange),
        "object": "chat.completion.chunk",
        "created": _created(exchange),
        "model": body.model,
    }

    def chunk(delta, finish_reason=None, usage=None, logprobs=None, index=0) -> dict:
        choices = (
            []
            if delta is None
            else [
                {
                    "index": index, "delta": delta, "logprobs": logprobs,
                    "finish_reason": finish_reason,
                }
            ]
        )
        return {**base, "choices": choices, **({"usage": usage} if usage else {})}

    return chunk


def _logprobs(body: CompletionRequest, events: list[dict]) -> dict | None:
    """OpenAI's `logprobs` of a choice (or of one chunk): the tokens of its text, from the
    token envelopes (the end token, which has no text, is not listed, as OpenAI lists none)."""
    if not body.logprobs:
        return None
    tokens = envelopes.tokens_of(events)
    return {"content": [_token_logprob(token) for token in tokens], "refusal": None}


def _token_logprob(token: dict) -> dict:
    # `bytes`: the UTF-8 of the token's own decoded text (a token holding part of a character
    # decodes to U+FFFD, and reports that character's bytes).
    return {
        "token": token["text"],
        "logprob": token["logprob"],
        "bytes": list(token["text"].encode()),
        "top_logprobs": [
            {"token": alt["text"], "logprob": alt["logprob"], "bytes": list(alt["text"].encode())}
            for alt in token.get("top", ())
        ],
    }


def usage(end: dict) -> dict:
    usage = end["usage"]
    return {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _usage_of(ends: list[dict]) -> dict:
    """The usage of a request's choices: its prompt once (as OpenAI counts it), the answers'
    tokens added up."""
    completion = sum(end["usage"]["completion_tokens"] for end in ends)
    return usage({"usage": {**ends[0]["usage"], "completion_tokens": completion}})


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "patchbay"}


def _completion_id(exchange) -> str:
    return f"chatcmpl-{exchange.assistant_message.pk}"


def _created(exchange) -> int:
    return int(exchange.assistant_message.created_at.timestamp())


def _error_type(status: int) -> str:
    return {401: "authentication_error", 429: "rate_limit_error"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
