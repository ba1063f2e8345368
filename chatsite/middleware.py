"""Middleware of our own: where Django and Channels run sync code, under load."""

import threading
from concurrent.futures import ThreadPoolExecutor

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


class ThreadPerConnection:
    """ASGI middleware: each HTTP request and each socket runs its sync work (its session, its
    user, its views' and consumer's ORM calls) in a thread of its own, as Django does for each
    HTTP request, but a thread taken from a pool of idle ones and given back at the end.

    Without it, Channels runs the sync work of every socket of the process on one shared
    thread, one after another: under a few hundred sockets, handshakes waited there past
    Daphne's connect timeout. And Django (asgiref) starts a new thread for each request and
    another to join it: `Thread.start` blocks the event loop until the new thread runs, which
    under load means until it gets the GIL. That was a third of the event loop's time at 200
    live answers (docs/BENCHMARKS.md, "Streaming under load"). Django's own per-request context
    sits inside this one and leaves it be.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        thread = _take_thread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                return await self.app(scope, receive, send)
        finally:
            thread.give_back()


class _ConnectionThread(ThreadPoolExecutor):
    """One thread, for one connection at a time; back in the pool when its work is done."""

    def __init__(self):
        super().__init__(max_workers=1, thread_name_prefix="connection")
        self._busy = 0
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            self._busy += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future) -> None:
        with self._lock:
            self._busy -= 1

    def give_back(self) -> None:
        # Work still running belongs to a connection that left (a cancelled call): it must
        # not hold up the next one, so this thread ends after it instead.
        with self._lock:
            reusable = self._busy == 0
        if reusable and len(_idle_threads) < IDLE_THREADS_MAX:
            _idle_threads.append(self)
        else:
            self.shutdown(wait=False)


def _take_thread() -> _ConnectionThread:
    try:
        return _idle_threads.pop()
    except IndexError:  # none idle (another event loop may have taken the last one)
        return _ConnectionThread()


# Enough for a few hundred live connections between bursts; a thread beyond it ends when idle.
IDLE_THREADS_MAX = 512
_idle_threads: list[_ConnectionThread] = []
