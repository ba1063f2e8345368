"""Middleware of our own: where Django and Channels run sync code, under load."""

from asgiref.sync import ThreadSensitiveContext


class OneThreadPerRequest:
    """The last middleware, and sync only, so Django runs every middleware above it in the
    request's worker thread.

    Under ASGI, Django runs a middleware that can do both in async mode, and a
    `MiddlewareMixin` in async mode moves each `process_request` and `process_response` to a
    thread and back: two thread hops per middleware, a dozen and more per request for ours, each
    waiting for the GIL behind the engine's thread. With this last, Django adapts once, here,
    and our views are sync anyway. Async views (the streaming endpoints) still run on the event
    loop. docs/BENCHMARKS.md, "Streaming under load", has the measurement.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class OwnThreadPerSocket:
    """ASGI middleware: a socket's sync work (its session, its user, the consumer's ORM calls)
    runs in a thread of its own, as Django does for each HTTP request.

    Without it Channels runs the database calls of every socket of the process on one shared
    thread, one after another: under a few hundred sockets, handshakes waited there past
    Daphne's connect timeout. The thread lives as long as the socket.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async with ThreadSensitiveContext():
            return await self.app(scope, receive, send)
