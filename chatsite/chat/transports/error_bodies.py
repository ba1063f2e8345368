"""JSON error bodies for what Django answers by itself under the API prefixes: an unknown
address (404), a wrong method (405, empty from `require_POST`) and a body over the upload limit
(413 instead of Django's HTML 400). Each in its family's own error shape: OpenAI's under `/v1`
and `/lorax/v1`, LoRAX's under `/lorax`, the native `{code, message}` under `/api`.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from chatsite.chat.transports import gate
from chatsite.errors import ChatError, status_of

OPENAI, LORAX, NATIVE = "openai", "lorax", "native"


def family_of(path: str) -> str | None:
    if path.startswith(("/v1/", "/lorax/v1/")) or path in ("/v1", "/lorax/v1"):
        return OPENAI
    if path.startswith("/lorax/") or path == "/lorax":
        return LORAX
    if path.startswith("/api/") or path == "/api":
        return NATIVE
    return None


def error_body(family: str, err: ChatError) -> JsonResponse:
    # Imported here: the API modules import much of the app, and this runs in the middleware.
    if family == OPENAI:
        from chatsite.chat.transports.openai_api import error_response

        return error_response(err)
    if family == LORAX:
        from chatsite.chat.transports.lorax_api import error_response

        return error_response(err)
    return JsonResponse({"code": err.code, "message": err.message}, status=status_of(err))


class ApiErrorBodies:
    """Middleware, sync like `OneThreadPerRequest` below it (so it adds no thread hop)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        family = family_of(request.path)
        if family is None or response.status_code not in (404, 405) or not _is_django_own(response):
            return response
        if response.status_code == 404:
            err = ChatError("not_found", "There is no API endpoint at this address.")
            return error_body(family, err)
        allowed = response.get("Allow", "")
        err = ChatError(
            "method_not_allowed",
            f"{request.method} is not allowed at this address; use {allowed or 'another method'}.",
        )
        answer = error_body(family, err)
        if allowed:
            answer["Allow"] = allowed
        return answer

    def process_exception(self, request, exception):
        family = family_of(request.path)
        if family is not None and isinstance(exception, RequestDataTooBig):
            return error_body(family, gate.too_large("The request body"))
        return None


def _is_django_own(response) -> bool:
    """Django's HTML page (or an empty 405); a view's own JSON or event stream stays."""
    return response.get("Content-Type", "text/html").startswith("text/html")
