from django.contrib import admin
from django.urls import include, path

from chatsite.chat.ops import metrics
from chatsite.chat.transports import lorax_api, openai_api, openai_completions
from chatsite.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("chatsite.accounts.urls")),
    path("api/v1/", include("chatsite.chat.transports.native_api_urls")),
    # OpenAI-compatible (docs/PROTOCOL.md §2).
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat-completions"),
    path("v1/completions", openai_completions.completions, name="openai-completions"),
    path("v1/models", openai_api.models, name="openai-models"),
    path("v1/models/<path:model_id>", openai_api.model, name="openai-model"),
    # LoRAX-compatible (docs/PROTOCOL.md §3); lorax-client posts to its base URL, `/lorax` itself,
    # and LoRAX's root route is `/`, so both spellings generate.
    path("lorax", lorax_api.compat, name="lorax"),
    path("lorax/", lorax_api.compat, name="lorax-root"),
    # LoRAX serves OpenAI's routes under its own base URL too: the same handlers as /v1.
    path("lorax/v1/chat/completions", openai_api.chat_completions, name="lorax-openai-chat"),
    path("lorax/v1/completions", openai_completions.completions, name="lorax-openai-completions"),
    path("lorax/generate", lorax_api.generate, name="lorax-generate"),
    path("lorax/generate_stream", lorax_api.generate_stream, name="lorax-generate-stream"),
    path("lorax/info", lorax_api.info, name="lorax-info"),
    path("lorax/health", lorax_api.health, name="lorax-health"),
    path("", include("chatsite.chat.pages.urls")),
]
