"""Which pages may open the chat socket: the site's own origin, exactly (docs/ARCHITECTURE.md,
"Security").

A browser sends the session cookie of a host to every port and scheme of that host, so a page
served from `http://site:9000` (or from a subdomain that an `ALLOWED_HOSTS` pattern admits) can
open the socket of `https://site` as whoever is signed in there. Channels'
`AllowedHostsOriginValidator` compares host names only; this compares the whole origin (scheme,
host and port) with the origin the socket was asked on, the way Django's CSRF check compares a
form's `Origin`: the same `SECURE_PROXY_SSL_HEADER` decides the scheme behind a TLS proxy, and
`CSRF_TRUSTED_ORIGINS` names any further origins (a proxy on another name, `https://*.example.com`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


class SiteOriginOnly:
    """ASGI middleware for sockets: refuses the handshake (HTTP 403) unless `origin_allowed`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def origin_allowed(scope) -> bool:
    headers = _headers(scope)
    origin = headers.get("origin")
    host = headers.get("host")
    if not origin or not host or not _host_allowed(host):
        return False  # a browser always sends both; a page may not hide where it comes from
    if origin == f"{_scheme(scope, headers)}://{host}":
        return True
    return _trusted(origin)


def _headers(scope) -> dict[str, str]:
    headers = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin1").lower(), value.decode("latin1"))
    return headers


def _host_allowed(host: str) -> bool:
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as Django's HttpRequest.get_host
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _scheme(scope, headers: dict[str, str]) -> str:
    """The page's scheme: https for `wss`, or when the TLS proxy says so (as HttpRequest.is_secure)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        forwarded = headers.get(meta_name.removeprefix("HTTP_").replace("_", "-").lower())
        if forwarded is not None:
            return "https" if forwarded.split(",", 1)[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") == "wss" else "http"


def _trusted(origin: str) -> bool:
    """`CSRF_TRUSTED_ORIGINS`, read as Django's CSRF middleware reads it."""
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
        netloc = parsed.netloc
    except ValueError:
        return False
    for pattern in trusted:
        if "*" in pattern:
            allowed = urlsplit(pattern)
            if allowed.scheme == parsed.scheme and is_same_domain(netloc, allowed.netloc.lstrip("*")):
                return True
    return False
