"""Where sync work runs under ASGI: each socket and request in a thread of its own, taken from
a pool of idle threads; an HTTP request's middleware chain in sync mode, in the request's
thread, not hopping to it hook by hook."""

import threading

import pytest
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.http import HttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from chatsite import middleware
from chatsite.middleware import ThreadPerConnection

# Channels' consumers and Django's handler close stale connections around their work, which
# touches the connection a thread kept from earlier tests.
pytestmark = pytest.mark.django_db


class ThreadReporter(AsyncWebsocketConsumer):
    """Answers every frame with the thread its sync work ran in, twice over."""

    async def receive(self, text_data=None, bytes_data=None):
        first = await sync_to_async(threading.get_ident)()
        second = await sync_to_async(threading.get_ident)()
        await self.send(text_data=f"{first} {second}")


async def threads_of(app, sockets: int = 2) -> list[tuple[str, str]]:
    communicators = [WebsocketCommunicator(app, "/") for _ in range(sockets)]
    try:
        for communicator in communicators:
            assert (await communicator.connect())[0]
        seen = []
        for communicator in communicators:
            await communicator.send_to(text_data="which thread?")
            seen.append(tuple((await communicator.receive_from()).split()))
        return seen
    finally:
        for communicator in communicators:
            await communicator.disconnect()


async def test_each_socket_runs_its_sync_work_in_a_thread_of_its_own():
    seen = await threads_of(ThreadPerConnection(ThreadReporter.as_asgi()))

    assert all(first == second for first, second in seen)  # one socket: one thread
    assert seen[0][0] != seen[1][0]  # two sockets: two threads


async def test_a_socket_that_ended_gives_its_thread_to_the_next_instead_of_starting_one():
    app = ThreadPerConnection(ThreadReporter.as_asgi())
    (first, _), = await threads_of(app, sockets=1)
    (second, _), = await threads_of(app, sockets=1)

    assert first == second


def test_a_thread_still_running_work_of_a_connection_that_left_is_not_given_to_another():
    release = threading.Event()
    thread = middleware._ConnectionThread()
    left_running = thread.submit(release.wait, 5)

    thread.give_back()  # its connection left while that call still runs
    assert thread not in middleware._idle_threads

    release.set()
    assert left_running.result(timeout=5) is True  # the call still finishes; then it ends


def thread_view(request):
    return HttpResponse(str(threading.get_ident()))


async def thread_of_a_request(app) -> bytes:
    from channels.testing import HttpCommunicator

    communicator = HttpCommunicator(app, "GET", "/thread/", headers=[(b"host", b"127.0.0.1")])
    response = await communicator.get_response()
    assert response["status"] == 200
    return response["body"]


async def test_an_http_request_runs_in_a_pooled_thread_inside_djangos_own_context():
    from django.core.handlers.asgi import ASGIHandler

    chain = [*CHAIN, "chatsite.middleware.OneThreadPerRequest"]
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=chain):
        app = ThreadPerConnection(ASGIHandler())
        first = await thread_of_a_request(app)
        second = await thread_of_a_request(app)

    assert first == second  # the next request reuses the thread; Django started none of its own


async def test_without_it_every_socket_shares_one_thread():
    seen = await threads_of(ThreadReporter.as_asgi())

    assert seen[0][0] == seen[1][0]


modes_seen: list[bool] = []


class RecordMode(MiddlewareMixin):
    """A middleware that can run either way, as Django's own do; records which way it ran."""

    def process_request(self, request):
        modes_seen.append(self.async_mode)


def view(request):
    return HttpResponse("ok")


urlpatterns = [path("where/", view), path("thread/", thread_view)]
CHAIN = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    f"{__name__}.RecordMode",
    "django.middleware.csrf.CsrfViewMiddleware",
]


async def mode_of_the_chain(middleware: list[str]) -> bool:
    modes_seen.clear()
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware):
        response = await AsyncClient().get("/where/")
    assert response.status_code == 200
    return modes_seen[0]


async def test_with_it_last_the_middleware_runs_sync_in_the_requests_thread():
    assert await mode_of_the_chain([*CHAIN, "chatsite.middleware.OneThreadPerRequest"]) is False


async def test_without_it_django_runs_the_middleware_async_hopping_to_threads_per_hook():
    assert await mode_of_the_chain(CHAIN) is True
