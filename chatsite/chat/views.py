"""The chat page. Everything live happens over /ws/chat/ and the read API."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from chatsite.adapters.selectors import adapters_usable_by
from chatsite.chat import selectors
from chatsite.chat.errors import ChatError


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
            "conversations": selectors.conversations_of(request.user)[:200],
            "adapters": adapters_usable_by(request.user),
            "max_prompt_chars": settings.MAX_PROMPT_CHARS,
        },
    )
