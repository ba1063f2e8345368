"""`Authorization: Bearer <api key>` for DRF views and for the plain async API views."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from chatsite.accounts.keys import bearer_secret, key_for_secret

BAD_KEY = "That API key is not valid; it may have been revoked. Create a new one under API keys."


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        secret = bearer_secret(request.headers.get("Authorization", ""))
        if secret is None:
            return None  # no key: session authentication may still apply
        key = key_for_secret(secret) if secret else None
        if key is None:
            raise exceptions.AuthenticationFailed(BAD_KEY)
        return key.user, key  # request.auth: the key, so its streams can end with it

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) to a call without credentials.
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Names the key in the OpenAPI schema (drf-spectacular finds it by subclassing)."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A Patchbay API key."}
