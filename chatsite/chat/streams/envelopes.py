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
    stop_sequence: bool = False, status: str,
) -> dict:
    """`status`: the answer's saved status (Message.Status; streams/lifecycle.py decides it).
    `tokens`: details of the answer's last tokens that came with no text (the end token, a
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
        status=status,
        usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        timings={"ttft_ms": _ms(ttft_ms), "total_ms": _ms(total_ms)},
        **details,
    )


def end_of(finished, *, message: int | None, reason: str, status: str) -> dict:
    """The end of a generation, from the engine's `Finished`."""
    return end(
        message=message,
        reason=reason,
        status=status,
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
    return [error(err), end(message=None, reason="error", status="error")]


def _envelope(kind: str, **payload) -> dict:
    return {"type": kind, "payload": payload}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def text_of(events: list[dict]) -> str:
    """The answer's text as a follower of `events` saw it (a continuation's first token is its
    earlier text)."""
    return "".join(e["payload"]["text"] for e in events if e["type"] == "inference.token")


def tokens_of(events: list[dict]) -> list[dict]:
    """The token details (`tokens`) of the token envelopes among `events`, in order: present
    only for answers that asked for them."""
    return [
        token
        for envelope in events
        if envelope["type"] == "inference.token"
        for token in envelope["payload"].get("tokens", ())
    ]
