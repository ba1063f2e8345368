"""The socket opens only for pages of the site's own origin: scheme, host and port, as Django's
CSRF origin check (a real Daphne and Chromium check it too: tests/e2e/test_sessions_live.py,
tests/browser/test_socket_origin.py)."""

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chatsite.origins import origin_allowed
from tests.chat.conftest import ChatSocket, session_key

pytestmark = [pytest.mark.django_db(transaction=True)]


async def handshake(user, **socket_fields) -> bool:
    socket = ChatSocket(await database_sync_to_async(session_key)(user), **socket_fields)
    connected = await socket.connect()
    if connected:
        await socket.close()
    return connected


def scope(origin: str, host: str, scheme: str = "ws", *headers) -> dict:
    raw = [(b"origin", origin.encode()), (b"host", host.encode()), *headers]
    return {"type": "websocket", "scheme": scheme, "headers": raw}


async def test_it_opens_for_a_page_of_the_same_origin(owner, demo_adapters):
    assert await handshake(owner, origin="http://testserver:8000", host="testserver:8000")


async def test_it_refuses_a_page_from_another_port_of_the_same_host(owner, demo_adapters):
    assert not await handshake(owner, origin="http://testserver:9000", host="testserver:8000")
    assert not await handshake(owner, origin="http://testserver:9000", host="testserver")


async def test_it_refuses_a_page_from_another_scheme_of_the_same_host(owner, demo_adapters):
    assert not await handshake(owner, origin="https://testserver", host="testserver")


@override_settings(ALLOWED_HOSTS=[".example.com"])
async def test_it_refuses_a_subdomain_that_allowed_hosts_admits(owner, demo_adapters):
    assert await handshake(owner, origin="http://chat.example.com", host="chat.example.com")
    assert not await handshake(owner, origin="http://evil.example.com", host="chat.example.com")


async def test_it_refuses_a_handshake_without_an_origin(owner, demo_adapters):
    socket = ChatSocket(await database_sync_to_async(session_key)(owner), origin="")
    assert not await socket.connect()


async def test_it_refuses_a_host_that_allowed_hosts_does_not_name(owner, demo_adapters):
    assert not await handshake(owner, origin="http://evil.example", host="evil.example")


def test_it_takes_the_scheme_from_wss_or_from_the_tls_proxy_header():
    assert origin_allowed(scope("https://testserver", "testserver", "wss"))
    assert not origin_allowed(scope("http://testserver", "testserver", "wss"))
    behind_proxy = (b"x-forwarded-proto", b"https")
    assert origin_allowed(scope("https://testserver", "testserver", "ws", behind_proxy))
    assert not origin_allowed(scope("http://testserver", "testserver", "ws", behind_proxy))


@override_settings(CSRF_TRUSTED_ORIGINS=["https://chat.example.org", "https://*.example.net"])
def test_it_accepts_the_origins_csrf_trusted_origins_names():
    assert origin_allowed(scope("https://chat.example.org", "testserver"))
    assert origin_allowed(scope("https://app.example.net", "testserver"))
    assert not origin_allowed(scope("http://app.example.net", "testserver"))
    assert not origin_allowed(scope("https://example.org", "testserver"))
