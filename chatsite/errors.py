"""Errors a person can read: a stable code and a sentence, the same in every transport
(docs/ARCHITECTURE.md, "Failures: what the user sees, what is saved").

Both apps raise them (chat, and adapters for unknown or unusable adapters), so the type lives in
the project package, not in either app. Every HTTP answer of a ChatError takes its status from
`STATUS_OF_CODE` below, whatever the family's body shape (native `{code, message}`, OpenAI
`{"error": {…}}`, LoRAX `{error, error_type}`, the page's `{"error": {code, message}}`); the
socket and SSE send the same code and sentence in their error event.
"""

from __future__ import annotations


class ChatError(Exception):
    def __init__(self, code: str, message: str, *, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        # The request field at fault, when one is (dotted: "messages.0.role"); OpenAI's
        # error body carries it as `param`. Set where the error is made, never read back
        # out of the sentence.
        self.param = param


def field_error(field: str, problem: str, code: str = "bad_request") -> ChatError:
    """A refusal of one request field: the sentence names it, `param` holds it."""
    return ChatError(code, f"Field “{field}”: {problem}", param=field)


STATUS_OF_CODE = {
    "not_authenticated": 401,
    "key_revoked": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,  # DRF's own refusals in the native API, with DRF's statuses
    "too_large": 413,
    "unsupported_media_type": 415,
    "unknown_adapter": 404,
    "model_not_found": 404,
    "stream_expired": 410,
    "too_many_streams": 429,
    "rate_limited": 429,
    # The engine's wait queue is full, or pinned adapters fill its adapter cache: both pass,
    # so clients are told to come back (SDKs retry 429 and 503, honouring Retry-After).
    "overloaded": 429,
    "adapter_cache_full": 503,
    "engine_unavailable": 503,
    "worker_lost": 503,
    "timeout": 504,
    "internal": 500,
}


def status_of(err: ChatError) -> int:
    """The HTTP status of `err`: 400 for every code not listed (a request the server refuses)."""
    return STATUS_OF_CODE.get(err.code, 400)
