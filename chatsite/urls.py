from django.contrib import admin
from django.urls import include, path

from chatsite.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("chatsite.accounts.urls")),
    path("api/v1/", include("chatsite.chat.api_urls")),
    path("", include("chatsite.chat.urls")),
]
