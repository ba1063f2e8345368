"""What the three HTTP API families share: key authentication for the plain async views, the
request rate limit, and Retry-After (docs/ARCHITECTURE.md, "HTTP APIs"); a ChatError's status is
`chatsite.errors.status_of`.

Each family answers errors in its own shape (native `{code, message}`, OpenAI `{"error": {…}}`,
LoRAX `{error, error_type}`) but with the same status and sentence.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import Http404
from pydantic import BaseModel, ValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from chatsite.accounts.authentication import BAD_KEY
from chatsite.accounts.keys import bearer_secret, key_for_secret
from chatsite.chat.conversations import limits
from chatsite.chat.transports import gate
from chatsite.chat.transports.streaming import RETRY_AFTER_S
from chatsite.errors import ChatError, field_error, status_of

NO_KEY = "Send an API key as “Authorization: Bearer <key>”; create one under API keys."

def retry_headers(err: ChatError) -> dict:
    if err.code in ("too_many_streams", "overloaded", "adapter_cache_full"):
        return {"Retry-After": str(RETRY_AFTER_S)}
    if err.code == "rate_limited":
        return {"Retry-After": str(getattr(err, "retry_after", 1))}
    return {}


async def key_user(request):
    """The user of the request's API key, for the OpenAI and LoRAX routes (keys only: they take
    no cookies, so no CSRF), counted against the rate limit. Raises ChatError otherwise."""
    secret = bearer_secret(request.headers.get("Authorization", ""))
    if not secret:
        raise ChatError("not_authenticated", NO_KEY)
    key = await sync_to_async(key_for_secret)(secret)
    if key is None:
        raise ChatError("not_authenticated", BAD_KEY)
    request.user = user = key.user
    request.auth = key  # as DRF does: its streams end when it is revoked
    await sync_to_async(limits.rate_check_user)(user)
    return user


def json_object(request, *, empty: dict | None = None) -> dict:
    """The request body as a JSON object (`empty` for no body) that passed the input gate, or
    a ChatError."""
    body = gate.request_body(request)
    if not body and empty is not None:
        return empty
    return gate.json_object(body or b"null")


def parse_body(request, model: type[BaseModel]):
    """The JSON body as `model`, or a ChatError("bad_request") naming the first problem."""
    return validated(model, json_object(request))


def validated(model: type[BaseModel], data: dict):
    """`data` as `model`, or a ChatError("bad_request") naming the first problem's field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise field_error(where, f"{err['msg']}.") from None


# --- native API (DRF) ---------------------------------------------------------------------------
_NATIVE_CODES = [
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "not_authenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


def native_exception_handler(exc, context):
    """DRF errors and ChatErrors as `{code, message}` with a sentence."""
    if isinstance(exc, ChatError):
        return Response(
            {"code": exc.code, "message": exc.message},
            status=status_of(exc),
            headers=retry_headers(exc),
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("There is nothing with that id.")
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for kind, c in _NATIVE_CODES if isinstance(exc, kind)), "bad_request")
    response.data = {"code": code, "message": _sentence(exc)}
    return response


def _sentence(exc) -> str:
    detail = getattr(exc, "detail", str(exc))
    if isinstance(exc, exceptions.Throttled):
        return f"Too many requests; try again in {exc.wait or 1:.0f} seconds."
    if isinstance(detail, dict):
        path = []
        while isinstance(detail, dict) and detail:  # nested serializers: name the inner field
            field, detail = next(iter(detail.items()))
            path.append(str(field))
        problem = _first(detail)
        if path == ["non_field_errors"]:
            return str(problem)
        return f"Field “{'.'.join(path)}”: {problem}"
    return str(_first(detail))


def _first(detail):
    while isinstance(detail, (list, dict)) and detail:
        detail = detail[0] if isinstance(detail, list) else next(iter(detail.values()))
    return detail
