"""Who the client is when requests come through the TLS proxy (docs/ARCHITECTURE.md, "Security").

Behind a proxy every request's peer (`REMOTE_ADDR`) is the proxy, so the login lockout, which
counts failures per name and address, would lock everyone out of a name at once. The proxy
appends the address that connected to it to `X-Forwarded-For`; anyone can send that header too,
so it is read only when the peer is one of `TRUSTED_PROXIES`, and then from the right: the first
address that is not itself a trusted proxy is the client. Addresses the client wrote further
left cannot change who it is.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_ip(request) -> str | None:
    """The client's address, for django-axes (`AXES_CLIENT_IP_CALLABLE`)."""
    peer = request.META.get("REMOTE_ADDR")
    if not _trusted(peer):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop):
            return hop if _address(hop) else peer  # a hop that is no address: the proxy is all we know
    return peer


def _trusted(address: str | None) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in settings.TRUSTED_PROXIES)


def _address(text: str | None):
    try:
        return ipaddress.ip_address(text or "")
    except ValueError:
        return None
