"""Read API under /api/v1/ (session auth). Another user's ids answer 404."""

from django.contrib.auth.decorators import login_not_required
from django.http import Http404
from django.utils.decorators import method_decorator
from rest_framework import generics

from chatsite.adapters.selectors import adapters_usable_by
from chatsite.chat import selectors
from chatsite.chat.errors import ChatError
from chatsite.chat.serializers import (
    AdapterSerializer,
    ConversationSerializer,
    MessageSerializer,
)

# DRF answers unauthenticated API calls itself (401/403 JSON), not with a login redirect.
api_view = method_decorator(login_not_required, name="dispatch")


@api_view
class ConversationList(generics.ListAPIView):
    serializer_class = ConversationSerializer

    def get_queryset(self):
        return selectors.conversations_of(self.request.user)


@api_view
class ConversationMessages(generics.ListAPIView):
    serializer_class = MessageSerializer

    def get_queryset(self):
        try:
            conversation = selectors.conversation_of(self.request.user, self.kwargs["pk"])
        except ChatError:
            raise Http404 from None
        return selectors.messages_of(conversation)


@api_view
class AdapterList(generics.ListAPIView):
    serializer_class = AdapterSerializer

    def get_queryset(self):
        return adapters_usable_by(self.request.user)
