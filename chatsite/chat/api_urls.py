from django.urls import path

from chatsite.chat import api

urlpatterns = [
    path("conversations/", api.ConversationList.as_view(), name="api-conversations"),
    path(
        "conversations/<int:pk>/messages/",
        api.ConversationMessages.as_view(),
        name="api-conversation-messages",
    ),
    path("adapters/", api.AdapterList.as_view(), name="api-adapters"),
]
