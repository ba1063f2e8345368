"""Statuses and endings the real SDKs act on, in-process: a Model by id, a full engine as 429
with Retry-After on every family, a full adapter cache as 503 (LoRAX: 429), the byte and time
caps as `length` (OpenAI) or `incomplete_generation` (LoRAX), and a stream whose engine fails
ending with its error, no clean finish after it. Answers are validated against the published
schemas (tests/specs/). The same routes through the real clients: tests/e2e/test_api_routes.py."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncRequestFactory
from django.urls import resolve

from chatsite.accounts.keys import api_key_create
from chatsite.adapters.models import Adapter
from chatsite.chat.models import Conversation, Message
from tests.holding import HELD
from tests.schemas import validate


@pytest.fixture
def key(owner, demo_adapters) -> str:
    return api_key_create(user=owner)[1]


def get(client, path, key):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}")


def chat(**fields):
    return {"model": "demo-poet", "messages": [{"role": "user", "content": "Hi"}], **fields}


def generate(**parameters):
    return {"inputs": "Hi", "parameters": {"max_new_tokens": 8, **parameters}}


async def post(path, body, key):
    """POST straight to the view that `path` resolves to. (Through AsyncClient the project's
    sync middleware holds the thread that the run's database writes need, and they wait.)"""
    request = AsyncRequestFactory().post(
        path, json.dumps(body), "application/json", headers={"Authorization": f"Bearer {key}"}
    )
    match = resolve(path)
    if asyncio.iscoroutinefunction(match.func):
        response = await match.func(request, **match.kwargs)
    else:  # a DRF view: in a thread, as Django runs it, and rendered
        response = await sync_to_async(lambda: match.func(request, **match.kwargs).render())()
    if response.streaming:
        return response, [chunk async for chunk in response.streaming_content]
    return response, None


def data_events(chunks) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded ([DONE] kept as the string)."""
    events = []
    for frame in b"".join(chunks).decode().split("\n\n"):
        if frame.startswith("data: "):
            data = frame.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# --- GET /v1/models/{id} --------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("model_id", ["base", "demo-poet"])
def test_it_retrieves_a_model_the_key_may_use(client, key, model_id):
    response = get(client, f"/v1/models/{model_id}", key)

    assert response.status_code == 200
    validate("openai-chat", "Model", response.json())
    assert response.json()["id"] == model_id


@pytest.mark.django_db
def test_it_answers_an_unknown_or_forbidden_model_with_model_not_found(client, key):
    Adapter.objects.filter(slug="demo-chef").update(visibility=Adapter.Visibility.STAFF)

    for model_id in ["no-such-adapter", "demo-chef"]:
        response = get(client, f"/v1/models/{model_id}", key)

        assert response.status_code == 404
        validate("openai-chat", "ErrorResponse", response.json())
        error = response.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (
            "model_not_found", "model", "invalid_request_error"
        )
    assert get(client, "/v1/models/demo-chef", "pb_wrong").status_code == 401


# --- a full engine --------------------------------------------------------------------------
@pytest.fixture
def full_engine(demo_model, monkeypatch):
    """This process's engine, built with no room in its wait queue: it refuses everything."""
    import chatsite.chat.workers.engine_holder
    from inference.engine import BatchEngine

    engine = BatchEngine(str(demo_model.base_dir), device="cpu", max_queued=0)
    monkeypatch.setattr(chatsite.chat.workers.engine_holder, "_engine", engine)
    yield engine
    engine.close()


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_every_family_with_429_and_retry_after_when_the_engine_is_full(
    owner, key, full_engine
):
    conversation = await sync_to_async(Conversation.objects.create)(owner=owner)
    refusals = [
        (f"/api/v1/conversations/{conversation.pk}/messages/", {"content": "Hi"}),
        ("/v1/chat/completions", chat()),
        ("/v1/chat/completions", chat(stream=True)),
        ("/v1/completions", {"model": "base", "prompt": "Hi", "stream": True}),
        ("/lorax", generate()),
        ("/lorax/generate_stream", generate()),
    ]
    for path, body in refusals:
        response, _ = await post(path, body, key)

        assert response.status_code == 429, path
        assert int(response["Retry-After"]) > 0
        answer = json.loads(response.content)
        if path.startswith("/v1/"):
            validate("openai-chat", "ErrorResponse", answer)
            assert (answer["error"]["code"], answer["error"]["type"]) == (
                "overloaded", "rate_limit_error"
            )
        elif path.startswith("/lorax"):
            validate("lorax", "ErrorResponse", answer)
            assert answer["error_type"] == "overloaded"
        else:
            assert answer["code"] == "overloaded"
    assert not await sync_to_async(Message.objects.exists)()


@pytest.fixture
def pinned_full_engine(demo_model, demo_adapters, monkeypatch):
    """This process's engine with one adapter slot, held by a pinned demo-chef."""
    import chatsite.chat.workers.engine_holder
    from chatsite.adapters.selectors import adapter_ref
    from inference.engine import BatchEngine

    engine = BatchEngine(str(demo_model.base_dir), device="cpu", max_adapters=1)
    engine.preload(adapter_ref(demo_adapters["demo-chef"]), pin=True)
    monkeypatch.setattr(chatsite.chat.workers.engine_holder, "_engine", engine)
    yield engine
    engine.close()


@pytest.mark.django_db(transaction=True)
async def test_it_answers_a_full_adapter_cache_with_retry_after(key, pinned_full_engine):
    response, _ = await post("/v1/chat/completions", chat(model="demo-poet"), key)
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert json.loads(response.content)["error"]["code"] == "adapter_cache_full"

    response, _ = await post("/lorax/generate", generate(adapter_id="demo-poet"), key)
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert json.loads(response.content)["error_type"] == "overloaded"

    response, _ = await post("/v1/chat/completions", chat(model="demo-chef"), key)
    assert response.status_code == 200  # the pinned adapter itself is served


# --- the byte and time caps -----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_it_reports_an_answer_cut_by_the_byte_cap_as_length(key, settings):
    settings.STREAM_MAX_BYTES = 4

    response, _ = await post("/v1/chat/completions", chat(**HELD), key)
    completion = json.loads(response.content)
    validate("openai-chat", "CreateChatCompletionResponse", completion)
    assert completion["choices"][0]["finish_reason"] == "length"

    response, _ = await post("/lorax/generate", generate(max_new_tokens=1000), key)
    validate("lorax", "GenerateResponse", json.loads(response.content))
    assert json.loads(response.content)["details"]["finish_reason"] == "length"


@pytest.mark.django_db(transaction=True)
async def test_it_reports_an_answer_cut_by_the_time_cap_as_length_never_a_clean_stop(
    key, settings
):
    settings.STREAM_MAX_DURATION_S = 0.2

    response, _ = await post("/v1/chat/completions", chat(**HELD), key)
    assert json.loads(response.content)["choices"][0]["finish_reason"] == "length"

    response, chunks = await post("/v1/chat/completions", chat(stream=True, **HELD), key)
    events = data_events(chunks)
    for event in events[:-1]:
        validate("openai-chat", "CreateChatCompletionStreamResponse", event)
    assert events[-2]["choices"][0]["finish_reason"] == "length" and events[-1] == "[DONE]"

    response, _ = await post("/v1/completions", {"model": "base", "prompt": "Hi", **HELD}, key)
    validate("openai-completions", "CreateCompletionResponse", json.loads(response.content))
    assert json.loads(response.content)["choices"][0]["finish_reason"] == "length"


@pytest.mark.django_db(transaction=True)
async def test_it_reports_an_answer_cut_by_the_time_cap_to_lorax_as_incomplete(key, settings):
    settings.STREAM_MAX_DURATION_S = 0.2
    held = {"max_new_tokens": HELD["max_tokens"], "ignore_eos_token": True}

    response, _ = await post("/lorax/generate", generate(**held), key)
    assert response.status_code == 424
    validate("lorax", "ErrorResponse", json.loads(response.content))
    assert json.loads(response.content)["error_type"] == "incomplete_generation"

    response, chunks = await post("/lorax/generate_stream", generate(**held), key)
    events = data_events(chunks)
    assert events[-1]["error_type"] == "incomplete_generation"
    for event in events[:-1]:
        validate("lorax", "StreamResponse", event)
        assert event["details"] is None  # no clean last token before the error


# --- an engine that fails -------------------------------------------------------------------
@pytest.fixture
def broken_engine(settings, monkeypatch):
    """No engine yet, and a base model that cannot load: every answer fails after it began."""
    import chatsite.chat.workers.engine_holder

    monkeypatch.setattr(chatsite.chat.workers.engine_holder, "_engine", None)
    settings.BASE_MODEL = "/nonexistent/model"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True})),
        ("/v1/completions", {"model": "demo-poet", "prompt": "Hi", "stream": True}),
    ],
)
async def test_it_ends_an_openai_stream_with_its_error_and_no_finish(
    key, broken_engine, path, body
):
    response, chunks = await post(path, body, key)

    events = data_events(chunks)
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert response.status_code == 200 and len(errors) == 1
    assert errors[0]["error"]["code"] == "engine_unavailable"
    assert events[events.index(errors[0]) + 1 :] == ["[DONE]"]
    finishes = [c for e in events if isinstance(e, dict) for c in e.get("choices", [])]
    assert all(choice["finish_reason"] is None for choice in finishes)


@pytest.mark.django_db(transaction=True)
async def test_it_ends_a_lorax_stream_with_its_error_and_no_finish(key, broken_engine):
    response, chunks = await post("/lorax", {**generate(), "stream": True}, key)

    events = data_events(chunks)
    assert response.status_code == 200
    assert events[-1]["error_type"] == "generation"
    assert all(event.get("details") is None for event in events)


@pytest.mark.django_db(transaction=True)
async def test_it_answers_a_failed_engine_with_503_to_openai_and_424_to_lorax(
    key, broken_engine
):
    response, _ = await post("/v1/chat/completions", chat(), key)
    assert response.status_code == 503
    assert json.loads(response.content)["error"]["type"] == "server_error"

    response, _ = await post("/lorax/", generate(), key)
    assert response.status_code == 424
    assert json.loads(response.content)["error_type"] == "generation"
