"""Downloads of a user's conversations and the upload that imports them (chatsite/chat/conversations/transfer.py)."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from chatsite.chat.conversations import selectors, transfer
from chatsite.errors import ChatError, status_of

FORMATS = {
    "md": (transfer.as_markdown, "text/markdown; charset=utf-8"),
    "jsonl": (transfer.as_jsonl, "application/jsonl; charset=utf-8"),
}


@require_GET
def export_one(request, conversation_id: int, fmt: str):
    try:
        conversation = selectors.conversation_of(request.user, conversation_id)
    except ChatError as err:
        return _error(err)
    return _download([conversation], fmt, f"patchbay-conversation-{conversation_id}")


@require_GET
def export_all(request, fmt: str):
    conversations = selectors.conversations_of(request.user).order_by("created_at", "id")
    return _download(conversations, fmt, "patchbay-conversations")


@require_POST
def import_file(request):
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise ChatError("bad_request", "Choose a file to import (field “file”).")
        if upload.size > transfer.IMPORT_MAX_BYTES:
            raise ChatError("invalid_import", "That file is too large to import.")
        made = transfer.conversations_import(user=request.user, data=upload.read())
    except ChatError as err:
        return _error(err)
    return JsonResponse({"imported": len(made), "conversations": [c.pk for c in made]})


def _download(conversations, fmt: str, name: str) -> HttpResponse:
    render, content_type = FORMATS[fmt]
    response = HttpResponse(render(conversations), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def _error(err: ChatError) -> JsonResponse:
    body = {"error": {"code": err.code, "message": err.message}}
    return JsonResponse(body, status=status_of(err))
