"""/metrics: who may read it, and what one streamed answer adds to it."""

import os
import socket
import urllib.request

import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from chatsite.chat.ops import metrics
from chatsite.chat.streams import tokenlog
from tests.chat.conftest import text_of
from tests.conftest import require_service

TOKEN = "s3cret-metrics-token-0123"
LOCAL = {"mode": "local", "worker": metrics.PROCESS_NAME}
GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 12}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, {**LOCAL, **labels}) or 0.0


def test_it_refuses_metrics_without_a_token_when_debug_is_off(client, settings):
    settings.DEBUG, settings.METRICS_TOKEN = False, None

    response = client.get("/metrics")

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "METRICS_TOKEN" in response.json()["message"]


def test_it_opens_metrics_without_a_token_only_in_debug(client, settings):
    settings.DEBUG, settings.METRICS_TOKEN = True, None

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"patchbay_requests", "patchbay_active_generations"} <= names


@pytest.mark.parametrize("header", ["", "Bearer wrong-token-wrong-token", TOKEN])
def test_it_refuses_metrics_without_the_right_bearer_token(client, settings, header):
    settings.DEBUG, settings.METRICS_TOKEN = True, TOKEN  # a token closes it even in DEBUG

    response = client.get("/metrics", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_it_serves_metrics_with_the_bearer_token(client, settings):
    settings.DEBUG, settings.METRICS_TOKEN = False, TOKEN

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert b"patchbay_time_to_first_token_seconds" in response.content


def test_it_refuses_other_methods(client, settings):
    settings.DEBUG, settings.METRICS_TOKEN = True, None

    assert client.post("/metrics").status_code == 405


@pytest.mark.django_db(transaction=True)
async def test_it_counts_a_streamed_answer(owner, socket_for):
    before = {
        name: sample(name)
        for name in (
            "patchbay_requests_total",
            "patchbay_generated_tokens_total",
            "patchbay_time_to_first_token_seconds_count",
            "patchbay_inter_token_latency_seconds_count",
        )
    }
    socket = await socket_for(owner)
    await socket.chat("Tell me about rivers.", adapter="demo-poet", params=GREEDY)
    events = await socket.until_end()
    tokens = events[-1]["payload"]["usage"]["completion_tokens"]
    assert text_of(events)

    def grew(name: str) -> float:
        return sample(name) - before[name]

    assert grew("patchbay_requests_total") == 1
    assert grew("patchbay_generated_tokens_total") == tokens
    assert grew("patchbay_time_to_first_token_seconds_count") == 1
    assert grew("patchbay_inter_token_latency_seconds_count") == tokens - 1
    assert sample("patchbay_active_generations") == 0
    assert sample("patchbay_waiting_generations") == 0
    assert sample("patchbay_adapter_cache_loads_total") >= 1  # demo-poet was loaded for it


def test_it_counts_errors_by_code_and_ends_once():
    before = sample("patchbay_errors_total", code="engine_unavailable")
    active = sample("patchbay_active_generations")

    generation = metrics.GenerationMetrics()
    generation.error("engine_unavailable")
    generation.end()
    generation.end()

    assert sample("patchbay_errors_total", code="engine_unavailable") == before + 1
    assert sample("patchbay_active_generations") == active


def test_it_serves_a_workers_metrics_on_its_own_port_when_asked(settings):
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.WORKER_METRICS_PORT, settings.WORKER_METRICS_ADDR = port, "127.0.0.1"

    metrics.start_worker_server()
    metrics.start_worker_server()  # once per process

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert b"patchbay_active_generations" in response.read()


def test_it_reports_the_celery_queue_depth_from_the_broker(settings, monkeypatch):
    url = os.environ.get("TEST_METRICS_REDIS_URL", "redis://127.0.0.1:6379/12")
    require_service("Redis", url)
    broker = redis.Redis.from_url(url)
    queues = ("gpu", "gpu.w1", tokenlog.WORKERS_KEY)
    broker.delete(*queues)
    broker.rpush("gpu", "task-1", "task-2", "task-3")
    broker.hset(tokenlog.WORKERS_KEY, "w1", "{}")  # a worker with two tasks on its own queue
    broker.rpush("gpu.w1", "task-4", "task-5")
    settings.INFERENCE_MODE, settings.REDIS_URL = "celery", url
    monkeypatch.setattr(tokenlog, "_sync_client", None)  # a client for this URL
    try:
        depth = REGISTRY.get_sample_value("patchbay_queue_depth", {"mode": "celery"})
    finally:
        broker.delete(*queues)

    assert depth == 5
