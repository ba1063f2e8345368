from django.contrib.auth.decorators import login_not_required
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from chatsite.chat.transports import native_api as api

urlpatterns = [
    path("conversations/", api.ConversationList.as_view(), name="api-conversations"),
    path("conversations/<int:pk>/", api.ConversationDetail.as_view(), name="api-conversation"),
    path(
        "conversations/<int:pk>/messages/",
        api.ConversationMessages.as_view(),
        name="api-conversation-messages",
    ),
    path("messages/<int:pk>/", api.MessageDetail.as_view(), name="api-message"),
    path("messages/<int:pk>/stream", api.MessageStream.as_view(), name="api-message-stream"),
    path("messages/<int:pk>/stop", api.MessageStop.as_view(), name="api-message-stop"),
    path("adapters/", api.AdapterList.as_view(), name="api-adapters"),
    path("schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path(
        "docs/",
        login_not_required(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", template_name="api/swagger_ui.html"
            )
        ),
        name="api-docs",
    ),
    re_path(r"^(?P<rest>.*)$", api.not_found),
]
