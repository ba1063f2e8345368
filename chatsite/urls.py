from django.contrib import admin
from django.urls import include, path

from chatsite.chat import lorax_api, metrics, openai_api
from chatsite.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("chatsite.accounts.urls")),
    path("api/v1/", include("chatsite.chat.api_urls")),
    # OpenAI-compatible (docs/PROTOCOL.md §2).
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat-completions"),
    path("v1/models", openai_api.models, name="openai-models"),
    # LoRAX-compatible (docs/PROTOCOL.md §3); lorax-client posts to its base URL, `/lorax` itself.
    path("lorax", lorax_api.compat, name="lorax"),
    path("lorax/generate", lorax_api.generate, name="lorax-generate"),
    path("lorax/generate_stream", lorax_api.generate_stream, name="lorax-generate-stream"),
    path("lorax/info", lorax_api.info, name="lorax-info"),
    path("lorax/health", lorax_api.health, name="lorax-health"),
    path("", include("chatsite.chat.urls")),
]
