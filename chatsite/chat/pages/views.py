"""The chat page, and the small JSON actions its sidebar and settings panel call.

Everything live happens over /ws/chat/ and the read API. The actions here take a signed-in
session and a CSRF token (header `X-CSRFToken`), a JSON body, and answer JSON: the
conversation on success, `{"error": {"code", "message"}}` with a 4xx status otherwise.
"""


from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from chatsite.adapters.selectors import adapters_usable_by
from chatsite.chat.conversations import limits, selectors, services
from chatsite.chat.transports import gate, streaming
from chatsite.chat.transports.api_common import json_object, retry_headers
from chatsite.errors import ChatError, status_of

SIDEBAR_LIMIT = 200


def home(request):
    return _page(request, conversation=None)


def conversation_page(request, conversation_id: int):
    try:
        conversation = selectors.conversation_of(request.user, conversation_id)
    except ChatError:
        raise Http404("No such conversation.") from None
    return _page(request, conversation=conversation)


def _page(request, conversation):
    return render(
        request,
        "chat/chat.html",
        {
            "conversation": conversation,
            "conversations": selectors.conversations_of(request.user)[:SIDEBAR_LIMIT],
            "adapters": adapters_usable_by(request.user),
            "max_prompt_chars": settings.MAX_PROMPT_CHARS,
        },
    )


# --- JSON actions ---------------------------------------------------------------------------------

def json_action(view):
    """Parse the JSON body into keyword arguments and turn a ChatError into a 4xx answer."""

    def wrapper(request, **kwargs):
        try:
            limits.rate_check_user(request.user)
            body = json_object(request, empty={}) if request.method == "POST" else {}
            return JsonResponse(view(request, body, **kwargs))
        except ChatError as err:
            return JsonResponse(
                {"error": {"code": err.code, "message": err.message}},
                status=status_of(err),
                headers=retry_headers(err),
            )

    wrapper.__name__ = view.__name__
    return wrapper


def _text_field(body: dict, name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ChatError("bad_request", f"Field “{name}” must be text.", param=name)
    return value


def _conversation_json(conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "adapter": conversation.adapter.slug if conversation.adapter else None,
        "system_prompt": conversation.system_prompt,
        "updated_at": conversation.updated_at.isoformat(),
        "source": conversation.source,
    }


@require_POST
@json_action
def conversation_rename(request, body, conversation_id: int):
    conversation = services.conversation_rename(
        user=request.user, conversation_id=conversation_id, title=_text_field(body, "title")
    )
    return _conversation_json(conversation)


@require_POST
@json_action
def conversation_delete(request, body, conversation_id: int):
    streaming.conversation_delete_from_sync_view(
        user=request.user, conversation_id=conversation_id
    )
    return {"deleted": conversation_id}


@require_POST
@json_action
def conversation_settings(request, body, conversation_id: int | None = None):
    """Adapter ("" = base) and system prompt; without an id, a new empty conversation."""
    conversation = services.conversation_configure(
        user=request.user,
        conversation_id=conversation_id,
        adapter_slug=_text_field(body, "adapter"),
        system_prompt=_text_field(body, "system_prompt"),
    )
    return _conversation_json(conversation)


@require_GET
@json_action
def conversation_search(request, body):
    query = gate.text(request.GET.get("q", "")[:200], name="The search")
    found = selectors.conversations_matching(request.user, query)[:SIDEBAR_LIMIT]
    return {"results": [_conversation_json(conversation) for conversation in found]}
