"""Prometheus metrics (docs/ARCHITECTURE.md, "Metrics").

All instrumentation lives here. The places where a generation starts, emits and ends
(`GenerationRun` in this web process, `WorkerGeneration` on a Celery GPU worker) each hold one
`GenerationMetrics`; the web tier counts requests in `generation_run`. Whatever runs the engine
also reports its adapter cache, read from `adapter_cache_stats()` at scrape time.

The web tier serves the text at `/metrics` (see `metrics_view` for who may read it). A Celery
worker is another process with its own counters: with WORKER_METRICS_PORT set it serves them
on its own port (`start_worker_server`).
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chatsite.errors import ChatError, status_of

log = logging.getLogger(__name__)

# This process, as the `worker` label names it (a Celery worker uses the same name in Redis).
PROCESS_NAME = f"{socket.gethostname()}:{os.getpid()}"
LABELS = ("mode", "worker")

REQUESTS = Counter(
    "patchbay_requests", "Answers asked for (generations requested).", LABELS
)
ACTIVE = Gauge("patchbay_active_generations", "Generations running now.", LABELS)
WAITING = Gauge(
    "patchbay_waiting_generations",
    "Generations submitted to the engine that have no first token yet (its queue and prefill).",
    LABELS,
)
TTFT = Histogram(
    "patchbay_time_to_first_token_seconds",
    "From submitting to the engine to the first token.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ITL = Histogram(
    "patchbay_inter_token_latency_seconds",
    "Between two tokens of one generation.",
    LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TOKENS = Counter(
    "patchbay_generated_tokens", "Tokens generated; rate() of it is tokens/s.", LABELS
)
ERRORS = Counter(
    "patchbay_errors", "Generations that ended in an error, by code.", (*LABELS, "code")
)
ROUTES = Counter(
    "patchbay_routing_decisions",
    "Celery-mode tasks by where the web tier sent them: affinity (a worker holding the "
    "adapter), least_busy, or shared (the `gpu` queue).",
    (*LABELS, "outcome"),
)


def mode() -> str:
    return settings.INFERENCE_MODE


def count_request() -> None:
    REQUESTS.labels(mode(), PROCESS_NAME).inc()


def count_route(outcome: str) -> None:
    ROUTES.labels(mode(), PROCESS_NAME, outcome).inc()


class GenerationMetrics:
    """One generation's timings, from its submission to its end (each call is cheap)."""

    def __init__(self):
        self._labels = (mode(), PROCESS_NAME)
        self._submitted = time.monotonic()
        self._last_token: float | None = None
        self._ended = False
        ACTIVE.labels(*self._labels).inc()
        WAITING.labels(*self._labels).inc()

    def token(self) -> None:
        now = time.monotonic()
        if self._last_token is None:
            WAITING.labels(*self._labels).dec()
            TTFT.labels(*self._labels).observe(now - self._submitted)
        else:
            ITL.labels(*self._labels).observe(now - self._last_token)
        self._last_token = now
        TOKENS.labels(*self._labels).inc()

    def error(self, code: str) -> None:
        ERRORS.labels(*self._labels, code).inc()

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        ACTIVE.labels(*self._labels).dec()
        if self._last_token is None:
            WAITING.labels(*self._labels).dec()


# --- read at scrape time ------------------------------------------------------------------------
class _EngineCollector:
    """The adapter cache of this process's engine, if it has loaded one (a scrape never loads
    the model), and in celery mode the tasks waiting in the broker: the shared `gpu` queue and
    the own queues of the workers in the routing registry."""

    def collect(self):
        labels = [mode(), PROCESS_NAME]
        stats = _cache_stats()
        if stats:
            for key in ("hits", "misses", "loads", "evictions"):
                family = CounterMetricFamily(
                    f"patchbay_adapter_cache_{key}",
                    f"Adapter cache {key}.",
                    labels=LABELS,
                )
                family.add_metric(labels, float(stats.get(key, 0)))
                yield family
            loaded = GaugeMetricFamily(
                "patchbay_adapter_cache_loaded", "Adapters loaded now.", labels=LABELS
            )
            loaded.add_metric(labels, float(len(stats.get("loaded", ()))))
            yield loaded
        depth = _queue_depth()
        if depth is not None:
            family = GaugeMetricFamily(
                "patchbay_queue_depth",
                "Tasks waiting in the broker for a GPU worker (the shared and the workers' own queues).",
                labels=("mode",),
            )
            family.add_metric([mode()], float(depth))
            yield family


def _cache_stats() -> dict | None:
    from chatsite.chat.workers.engine_holder import loaded_engine

    engine = loaded_engine()
    stats = getattr(engine, "adapter_cache_stats", None)
    if stats is None:
        return None
    try:
        return stats()
    except Exception:  # a scrape must not fail because the engine is closing
        log.exception("adapter_cache_stats failed")
        return None


def _queue_depth() -> int | None:
    if mode() != "celery" or not settings.REDIS_URL:
        return None
    from chatsite.chat.streams import tokenlog
    from chatsite.chat.workers import task_routing

    try:  # Celery's Redis transport keeps each queue as one list: `gpu` and each worker's own
        redis = tokenlog.sync_client()
        queues = [task_routing.SHARED_QUEUE] + [
            task_routing.worker_queue(name.decode()) for name in redis.hkeys(tokenlog.WORKERS_KEY)
        ]
        pipe = redis.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        return sum(pipe.execute())
    except Exception:
        log.warning("queue depth unavailable", exc_info=True)
        return None


REGISTRY.register(_EngineCollector())


# Thread kinds by name prefix: the engine's loop, the connection threads of requests and sockets
# (chatsite.middleware), and the main thread, which runs Daphne's event loop.
THREAD_KINDS = (("patchbay-engine", "engine"), ("connection", "connection"), ("MainThread", "main"))
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class _ThreadCpuCollector:
    """CPU seconds of this process's live Python threads, by kind (Linux, from /proc): where a
    web process's time goes under load. `process_cpu_seconds_total` (prometheus_client's own)
    is the whole process; bench/load.py reports both per answer and per token."""

    def collect(self):
        family = CounterMetricFamily(
            "patchbay_thread_cpu_seconds",
            "CPU seconds of this process's live threads, by kind (engine, connection, main, other).",
            labels=(*LABELS, "thread"),
        )
        for kind, seconds in thread_cpu_seconds().items():
            family.add_metric([mode(), PROCESS_NAME, kind], seconds)
        yield family


def thread_cpu_seconds() -> dict[str, float]:
    totals = dict.fromkeys([kind for _, kind in THREAD_KINDS] + ["other"], 0.0)
    for thread in threading.enumerate():
        kind = next((k for prefix, k in THREAD_KINDS if thread.name.startswith(prefix)), "other")
        totals[kind] += _thread_cpu(thread.native_id)
    return totals


def _thread_cpu(native_id: int | None) -> float:
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:  # the thread has just ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


if os.path.exists("/proc/self/task"):
    REGISTRY.register(_ThreadCpuCollector())


# --- serving ------------------------------------------------------------------------------------
@login_not_required
@require_GET
def metrics_view(request):
    """Secure by default: with METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>`
    reads the metrics; without it they are open only when DEBUG is on (a developer's machine),
    and otherwise refused, so a production deployment never leaks them by accident."""
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(sent, f"Bearer {token}".encode()):
            return _refuse(
                ChatError("not_authenticated", "Send “Authorization: Bearer <METRICS_TOKEN>”.")
            )
    elif not settings.DEBUG:
        off = "Metrics are off: set METRICS_TOKEN to read them with that token."
        return _refuse(ChatError("forbidden", off))
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _refuse(err: ChatError) -> JsonResponse:
    return JsonResponse({"code": err.code, "message": err.message}, status=status_of(err))


_server_lock = threading.Lock()
_server_started = False


def start_worker_server() -> None:
    """A Celery worker's own metrics port (WORKER_METRICS_PORT; off when unset). It binds
    WORKER_METRICS_ADDR, 127.0.0.1 by default: it has no token check, so expose it on purpose."""
    global _server_started
    port = settings.WORKER_METRICS_PORT
    with _server_lock:
        if port is None or _server_started:
            return
        from prometheus_client import start_http_server

        start_http_server(port, addr=settings.WORKER_METRICS_ADDR)
        _server_started = True
        log.info("worker metrics on %s:%s", settings.WORKER_METRICS_ADDR, port)
