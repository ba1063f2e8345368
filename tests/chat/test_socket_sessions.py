"""An open socket ends with its session: logout, a password change, the user deactivated or
deleted. It closes with code 4401 and a reason in words (a live Daphne: tests/e2e/test_sessions_live.py)."""

import os

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client, override_settings

from chatsite.accounts.socket_sessions import ENDED_REASON, SESSION_ENDED
from tests.chat.conftest import ChatSocket
from tests.conftest import require_service

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
CLOSED = {"type": "websocket.close", "code": SESSION_ENDED, "reason": ENDED_REASON}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def signed_in(user) -> Client:
    browser = Client()
    await database_sync_to_async(browser.force_login)(user)
    return browser


async def socket_of(browser: Client) -> ChatSocket:
    socket = ChatSocket(browser.cookies[settings.SESSION_COOKIE_NAME].value)
    assert await socket.connect()
    return socket


async def closing(socket: ChatSocket) -> dict:
    return await socket.communicator.receive_output(timeout=20)


async def still_open(socket: ChatSocket) -> bool:
    """A frame that needs an answer gets one: the socket still works as its user."""
    await socket.send(type="chat.stop", message=999_999)
    reply = await socket.receive()
    return reply["type"] == "inference.error" and reply["payload"]["code"] == "not_found"


async def test_it_closes_the_socket_of_a_session_that_logs_out(owner, demo_adapters):
    browser = await signed_in(owner)
    socket = await socket_of(browser)

    await database_sync_to_async(browser.post)("/accounts/logout/")

    assert await closing(socket) == CLOSED


async def test_it_leaves_the_sockets_of_the_users_other_sessions_open_on_logout(owner, demo_adapters):
    laptop, phone = await signed_in(owner), await signed_in(owner)
    laptop_socket, phone_socket = await socket_of(laptop), await socket_of(phone)

    await database_sync_to_async(phone.post)("/accounts/logout/")

    assert await closing(phone_socket) == CLOSED
    assert await still_open(laptop_socket)
    await laptop_socket.close()


async def test_it_closes_every_socket_of_the_user_on_a_password_change(owner, other_user, demo_adapters):
    laptop, phone = await signed_in(owner), await signed_in(owner)
    laptop_socket, phone_socket = await socket_of(laptop), await socket_of(phone)
    bystander = await socket_of(await signed_in(other_user))

    response = await database_sync_to_async(laptop.post)(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "a new long phrase",
         "new_password2": "a new long phrase"},
    )

    assert response.status_code == 302
    assert await closing(phone_socket) == CLOSED
    assert await closing(laptop_socket) == CLOSED
    assert await still_open(bystander)
    # The browser that changed it stays signed in: a new socket opens.
    reopened = await socket_of(laptop)
    assert await still_open(reopened)
    await reopened.close()
    await bystander.close()


async def test_it_closes_the_sockets_of_a_deactivated_user(owner, demo_adapters):
    socket = await socket_of(await signed_in(owner))
    owner.is_active = False

    await database_sync_to_async(owner.save)()

    assert await closing(socket) == CLOSED


async def test_it_closes_the_sockets_of_a_deleted_user(owner, demo_adapters):
    socket = await socket_of(await signed_in(owner))

    await database_sync_to_async(owner.delete)()

    assert await closing(socket) == CLOSED


async def test_it_acts_on_no_frame_once_the_session_is_gone_without_a_notice(owner, demo_adapters):
    socket = await socket_of(await signed_in(owner))
    # As `clearsessions` or another process would: no signal reaches this socket.
    await database_sync_to_async(lambda: Session.objects.all().delete())()

    await socket.chat("am I still in?")

    assert await closing(socket) == CLOSED


@pytest.mark.services
async def test_it_reaches_the_socket_through_the_redis_channel_layer_of_celery_mode(owner, demo_adapters):
    require_service("Redis", REDIS_URL)
    redis_layer = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                               "CONFIG": {"hosts": [REDIS_URL]}}}
    with override_settings(CHANNEL_LAYERS=redis_layer):
        browser = await signed_in(owner)
        socket = await socket_of(browser)

        await database_sync_to_async(browser.post)("/accounts/logout/")

        assert await closing(socket) == CLOSED
