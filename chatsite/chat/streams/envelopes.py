"""The one publisher of stream envelopes (docs/PROTOCOL.md §1).

Every transport (socket, SSE) sends exactly these dicts; nothing else builds them. Besides the
protocol's fields, each envelope names its assistant message (`message` on start, token and
end; `message_id` on error, whose `message` is the sentence) so that one socket can carry
several generations at once.
"""

from __future__ import annotations

from chatsite.errors import ChatError


def start(*, message: int, conversation: int, adapter: str | None, parent: int | None = None) -> dict:
    # `parent` (the user message answered) lets a page place a new answer in its branch.
    return _envelope(
        "inference.start", message=message, conversation=conversation, adapter=adapter,
        parent=parent,
    )


def token(*, message: int, text: str, index: int, tokens=()) -> dict:
    """`tokens`: the engine's details of the tokens behind `text` (inference.types.TokenInfo),
    only for answers that asked for them (the OpenAI and LoRAX APIs); others stay small."""
    details = {"tokens": token_details(tokens)} if tokens else {}
    return _envelope("inference.token", message=message, text=text, index=index, **details)


def token_details(tokens) -> list[dict]:
    """TokenInfo as JSON: id, text, logprob, special, and `top` (alternatives) when asked."""
    return [
        {
            "id": token.id,
            "text": token.text,
            "logprob": token.logprob,
            "special": token.special,
            **({"top": token_details(token.top)} if token.top else {}),
        }
        for token in tokens
    ]


def end(
    *, message: int | None, reason: str, prompt_tokens: int = 0, completion_tokens: int = 0,
    ttft_ms: float | None = None, total_ms: float = 0.0, tokens=(), prefill=(),
    stop_sequence: bool = False,
) -> dict:
    """`tokens`: details of the answer's last tokens that came with no text (the end token, a
    stop string's); `prefill`: the prompt's. Both only when the answer asked for details.
    `stop_sequence`: (only when true) a stop string, not an end token, ended it."""
    details = {"tokens": token_details(tokens)} if tokens else {}
    if prefill:
        details["prefill"] = token_details(prefill)
    if stop_sequence:
        details["stop_sequence"] = True
    return _envelope(
        "inference.end",
        message=message,
        reason=reason,
        usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        timings={"ttft_ms": _ms(ttft_ms), "total_ms": _ms(total_ms)},
        **details,
    )


def end_of(finished, *, message: int, reason: str) -> dict:
    """The end of a generation, from the engine's `Finished`."""
    return end(
        message=message,
        reason=reason,
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        ttft_ms=finished.ttft_ms,
        total_ms=finished.total_ms,
        tokens=finished.tokens,
        prefill=finished.prompt,
        stop_sequence=finished.stop_sequence,
    )


def error(err: ChatError, *, message: int | None = None) -> dict:
    return _envelope("inference.error", code=err.code, message=err.message, message_id=message)


def notice(err: ChatError, *, message: int, resumed: bool) -> dict:
    """Something happened to a live answer that does not end it (docs/ARCHITECTURE.md, "Worker
    loss and failover"): `worker_lost` with `resumed` true when another worker goes on with it.
    Named like an error (`message` is the sentence); clients that do not know it pass over it."""
    return _envelope(
        "inference.notice", code=err.code, message=err.message, message_id=message,
        resumed=resumed,
    )


def rejection(err: ChatError) -> list[dict]:
    """A request refused before any generation began: an error, then its end."""
    return [error(err), end(message=None, reason="error")]


def from_saved(message) -> list[dict]:
    """The whole generation as one replay, for a client that comes back after its log is gone."""
    events = [
        start(
            message=message.pk,
            conversation=message.conversation_id,
            adapter=message.adapter.slug if message.adapter else None,
            parent=message.parent_id,
        )
    ]
    if message.content:
        events.append(token(message=message.pk, text=message.content, index=0))
    if message.error_code:
        events.append(error(ChatError(message.error_code, message.error_text), message=message.pk))
    events.append(
        end(
            message=message.pk,
            reason=message.finish_reason or "interrupted",
            prompt_tokens=message.prompt_tokens or 0,
            completion_tokens=message.completion_tokens or 0,
            ttft_ms=message.ttft_ms,
            total_ms=message.total_ms or 0.0,
        )
    )
    return events


def numbered_saved(message) -> list[tuple[int, dict]]:
    """`from_saved` with the SSE ids the live log gave those events: the start is 0, the end
    keeps its live id (`end_event_id`) and the events before it count down from there, so the
    one token stands for every live token up to its id. Without a saved id: 0, 1, 2…"""
    events = from_saved(message)
    end_id = message.end_event_id
    if end_id is None:
        return list(enumerate(events))
    first = end_id - len(events) + 2
    return [(0, events[0])] + [(first + i, event) for i, event in enumerate(events[1:])]


def _envelope(kind: str, **payload) -> dict:
    return {"type": kind, "payload": payload}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def tokens_of(events: list[dict]) -> list[dict]:
    """The token details (`tokens`) of the token envelopes among `events`, in order: present
    only for answers that asked for them."""
    return [
        token
        for envelope in events
        if envelope["type"] == "inference.token"
        for token in envelope["payload"].get("tokens", ())
    ]
