"""The input gate: every JSON body, socket frame, header id and query text a client sends passes
here before anything else reads it (docs/ARCHITECTURE.md, "Input gate").

What it refuses, on every transport alike, as a ChatError each transport answers in its own
shape (400; 413 for a body over the upload limit):
- JSON that does not parse, with NaN/Infinity, invalid UTF-8 or a lone UTF-16 surrogate
  ("\\ud800"): none of them can be stored or sent back as UTF-8;
- JSON nested deeper than MAX_DEPTH: deeper structures only ever come from attackers, and
  Python's own decoder and encoder recurse (a RecursionError, a 500);
- NUL characters anywhere in a string or a key: PostgreSQL cannot store them in text;
- ids and `Last-Event-ID` that are not plain ASCII digits of a sane length ("²" and "٣" pass
  `str.isdigit()` but not `int()`).

orjson decodes (docs/ARCHITECTURE.md, "Library choices"); one walk then checks depth and NUL.
"""

from __future__ import annotations

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig

from chatsite.errors import ChatError

MAX_DEPTH = 64  # a JSON schema in a request (response_format, tools) nests a dozen or so
# Longer than any id a 64-bit key can have, short enough that int() is instant.
MAX_ID_DIGITS = 18


def loads(raw: bytes | str, *, what: str = "The request body"):
    """Decode `raw` as JSON that passes the gate, or raise ChatError("bad_request")."""
    if isinstance(raw, str):
        # A str can hold lone surrogates itself; orjson then refuses the bytes.
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise too_large(what)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ChatError("bad_request", _decode_problem(what, str(exc))) from None
    _check_tree(data, what)
    return data


def json_object(raw: bytes | str, *, what: str = "The request body") -> dict:
    data = loads(raw, what=what)
    if not isinstance(data, dict):
        raise ChatError("bad_request", f"{what} must be a JSON object.")
    return data


def request_body(request) -> bytes:
    """The body of a Django request, with Django's upload limit as a ChatError."""
    try:
        return request.body
    except RequestDataTooBig:
        raise too_large("The request body") from None


def too_large(what: str) -> ChatError:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return ChatError("too_large", f"{what} is larger than the limit of {limit} bytes.")


def text(value: str, *, name: str) -> str:
    """Text from outside JSON (a query parameter, a header): no NUL, no lone surrogate."""
    _check_string(value, name)
    return value


def event_id(value: str | None, *, name: str = "Last-Event-ID") -> int:
    """An event id header: -1 when absent, else its ASCII digits as an int."""
    value = (value or "").strip()
    if not value:
        return -1
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS):
        raise ChatError("bad_request", f"{name} must be the id of an event you received.")
    return int(value)


def _decode_problem(what: str, detail: str) -> str:
    if "depth limit" in detail:
        return f"{what} is nested deeper than {MAX_DEPTH} levels."
    if "infinity" in detail:
        return f"{what} has a number too large to represent."
    if "surrogate" in detail or "UTF-8" in detail:
        return f"{what} is not valid UTF-8 text (a lone surrogate such as \\ud800, or bad bytes)."
    return f"{what} is not valid JSON."


def _check_tree(data, what: str) -> None:
    """Depth and NUL, without recursion (a deep document must not overflow this either)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_string(node, what)
        elif isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise ChatError("bad_request", f"{what} is nested deeper than {MAX_DEPTH} levels.")
            if isinstance(node, dict):
                for key, value in node.items():
                    _check_string(key, what)
                    stack.append((value, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)


def _check_string(value: str, what: str) -> None:
    if "\x00" in value:
        raise ChatError("bad_request", f"{what} contains a NUL character (\\u0000); remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(
            "bad_request", f"{what} contains a lone surrogate (such as \\ud800); it is not text."
        ) from None
