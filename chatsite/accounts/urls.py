from django.urls import include, path

from chatsite.accounts.views import SignupView, api_key_revoke, api_keys

urlpatterns = [
    path("signup/", SignupView.as_view(), name="signup"),
    path("keys/", api_keys, name="api-keys"),
    path("keys/<int:key_id>/revoke/", api_key_revoke, name="api-key-revoke"),
    path("", include("django.contrib.auth.urls")),
]
