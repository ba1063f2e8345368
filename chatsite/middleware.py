"""Middleware of our own."""


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
