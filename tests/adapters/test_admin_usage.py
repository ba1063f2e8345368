"""The change page: usage totals, the engine's cache per worker, preload/evict, the try-it box."""

import json
import re
import warnings
from datetime import timedelta

import pytest
from django.utils import timezone

from chatsite.adapters.selectors import adapter_usage, adapter_usage_by_day
from chatsite.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def change_url(adapter) -> str:
    return f"/admin/adapters/adapter/{adapter.pk}/change/"


@pytest.fixture
def answered(owner, demo_adapters):
    """demo-poet answered twice (one error); demo-chef once."""
    poet, chef = demo_adapters["demo-poet"], demo_adapters["demo-chef"]
    conversation = Conversation.objects.create(owner=owner, adapter=poet)

    def answer(adapter, **fields):
        return Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, adapter=adapter, **fields
        )

    answer(poet, status="complete", prompt_tokens=10, completion_tokens=20, ttft_ms=100.0, total_ms=1000.0)
    answer(poet, status="error", prompt_tokens=6, completion_tokens=0, ttft_ms=None, total_ms=50.0)
    answer(chef, status="complete", prompt_tokens=99, completion_tokens=99, ttft_ms=9.0, total_ms=99.0)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="hi", adapter=poet)
    return poet


def test_it_totals_the_answers_given_with_an_adapter(answered):
    usage = adapter_usage(answered)

    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens, usage.errors) == (2, 16, 20, 1)
    assert usage.mean_ttft_ms == 100.0
    assert usage.tokens_per_s == 20.0  # 20 tokens in the 1 s of the answer that produced any
    assert usage.last_used is not None


def test_it_reports_no_usage_for_an_unused_adapter(demo_adapters):
    usage = adapter_usage(demo_adapters["demo-terse"])

    assert (usage.requests, usage.errors, usage.last_used, usage.tokens_per_s) == (0, 0, None, None)


def test_it_shows_usage_on_the_change_page(admin_client, answered):
    page = admin_client.get(change_url(answered)).content.decode()

    assert 'data-testid="adapter-usage"' in page
    for shown in ("<td>Requests</td><td>2</td>", "<td>16 / 20</td>", "<td>Errors</td><td>1</td>", "100 ms", "20.0"):
        assert shown in page


def test_it_shows_the_last_use_as_a_date_a_person_reads(admin_client, answered):
    page = admin_client.get(change_url(answered)).content.decode()

    last_used = page.split("<td>Last used</td><td>")[1].split("</td>")[0]
    assert re.fullmatch(r"\d{1,2} \w{3} \d{4}, \d{2}:\d{2} \(0\xa0minutes ago\)", last_used), last_used


def test_it_charts_requests_and_tokens_per_second_per_day(admin_client, answered):
    poet_answers = Message.objects.filter(adapter=answered, role=Message.Role.ASSISTANT)
    three_days_ago = timezone.now() - timedelta(days=3)
    poet_answers.filter(status="error").update(created_at=three_days_ago)

    days = adapter_usage_by_day(answered)

    assert len(days) == 14 and days[-1].day == timezone.localdate()
    assert [d.requests for d in days[-4:]] == [1, 0, 0, 1]
    assert days[-1].tokens_per_s == pytest.approx(20.0)  # 20 tokens in 1,000 ms
    assert days[-4].tokens_per_s is None  # the error produced no tokens
    page = admin_client.get(change_url(answered)).content.decode()
    chart = re.search(r'<svg data-testid="adapter-usage-chart".*?</svg>', page, re.S).group(0)
    assert chart.count('<rect class="requests"') == 14
    assert f"{days[-1].day:%d %b}: 1 requests, 20.0 tokens/s" in chart
    assert f"{days[-4].day:%d %b}: 1 requests</title>" in chart


def test_it_draws_an_empty_chart_for_an_unused_adapter(admin_client, demo_adapters):
    page = admin_client.get(change_url(demo_adapters["demo-chef"])).content.decode()
    chart = re.search(r'<svg data-testid="adapter-usage-chart".*?</svg>', page, re.S).group(0)
    assert chart.count('<rect class="requests"') == 14
    assert "<polyline" not in chart and "best none" in chart


def test_it_preloads_pins_and_evicts_and_shows_the_cache(admin_client, demo_adapters):
    poet = demo_adapters["demo-poet"]

    preloaded = admin_client.post(f"/admin/adapters/adapter/{poet.pk}/preload/", follow=True).content.decode()
    assert "Adapter demo-poet is preloaded and pinned." in preloaded
    assert "<td>yes</td><td>yes</td>" in preloaded  # loaded, pinned
    evicted = admin_client.post(f"/admin/adapters/adapter/{poet.pk}/evict/", follow=True).content.decode()
    assert "Adapter demo-poet is evicted." in evicted
    assert "<td>no</td><td>no</td>" in evicted


class CachingEngine:
    """Only the cache controls of the engine, with an adapter of a known size: the panel shows
    it (the test above runs against the real engine)."""

    def __init__(self):
        self.entries = {}

    def preload(self, ref, pin=False):
        self.entries[ref.name] = {"loaded": True, "pinned": pin, "bytes": 3 * 1024 * 1024}

    def evict(self, name):
        self.entries.pop(name, None)

    def adapter_cache_stats(self):
        return {"adapters": dict(self.entries), "hits": 0, "misses": 0}


def test_it_drives_the_cache_controls_of_an_engine_that_has_them(admin_client, demo_adapters, monkeypatch):
    engine = CachingEngine()
    monkeypatch.setattr("chatsite.adapters.cache.local_engine", lambda: engine)
    poet = demo_adapters["demo-poet"]

    preloaded = admin_client.post(f"/admin/adapters/adapter/{poet.pk}/preload/", follow=True).content.decode()
    assert "Adapter demo-poet is preloaded and pinned." in preloaded
    assert "<td>yes</td><td>yes</td><td>3.0 MiB</td>" in preloaded
    evicted = admin_client.post(f"/admin/adapters/adapter/{poet.pk}/evict/", follow=True).content.decode()
    assert "Adapter demo-poet is evicted." in evicted
    assert "<td>no</td><td>no</td><td>—</td>" in evicted
    assert engine.entries == {}


def test_it_says_the_cache_belongs_to_the_workers_in_celery_mode(admin_client, demo_adapters, settings):
    settings.INFERENCE_MODE = "celery"

    page = admin_client.get(change_url(demo_adapters["demo-poet"])).content.decode()

    assert "the workers manage their own caches" in page


# --- try it -----------------------------------------------------------------------------------


def events_of(response) -> list[dict]:
    # The view streams asynchronously (for Daphne); the sync test client reads it whole, with a
    # warning that says exactly that. The browser test follows it live.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume asynchronous")
        body = b"".join(response).decode()
    blocks = [block for block in body.split("\n\n") if block]
    return [json.loads(block.split("data: ", 1)[1]) for block in blocks]


def test_it_streams_a_test_prompt_from_the_change_page(admin_client, demo_adapters):
    poet = demo_adapters["demo-poet"]
    poet.enabled = False  # admins try an adapter before they let anyone use it
    poet.save()

    response = admin_client.post(f"/admin/adapters/adapter/{poet.pk}/try/", {"prompt": "Hello"})
    events = events_of(response)

    assert response["Content-Type"] == "text/event-stream"
    assert events[0]["type"] == "inference.start"
    assert events[0]["payload"]["adapter"] == "demo-poet"
    assert events[0]["payload"]["message"] is None  # a trial saves no rows
    assert events[1]["type"] == "inference.token"
    assert events[-1]["type"] == "inference.end"
    assert events[-1]["payload"]["reason"] in ("stop", "length")
    assert not Message.objects.exists()  # a trial is not usage


def test_it_refuses_an_empty_test_prompt(admin_client, demo_adapters):
    poet = demo_adapters["demo-poet"]

    events = events_of(admin_client.post(f"/admin/adapters/adapter/{poet.pk}/try/", {"prompt": "  "}))

    assert [e["type"] for e in events] == ["inference.error", "inference.end"]
    assert "test prompt" in events[0]["payload"]["message"]


def test_it_puts_the_try_it_box_on_the_change_page_without_inline_script(admin_client, demo_adapters):
    response = admin_client.get(change_url(demo_adapters["demo-poet"]))
    page = response.content.decode()

    assert 'data-testid="adapter-try"' in page
    assert 'src="/static/adapters/try-it.js"' in page
    assert "unsafe-inline" not in response["Content-Security-Policy"]


def test_it_does_not_load_a_model_into_the_web_process_outside_local_mode(admin_client, demo_adapters, settings):
    settings.INFERENCE_MODE = "celery"
    poet = demo_adapters["demo-poet"]

    events = events_of(admin_client.post(f"/admin/adapters/adapter/{poet.pk}/try/", {"prompt": "Hi"}))

    assert [e["type"] for e in events] == ["inference.start", "inference.error", "inference.end"]
    assert "INFERENCE_MODE=local" in events[1]["payload"]["message"]
