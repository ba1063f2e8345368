"""The routes and statuses real clients rely on, against a real Daphne with the real clients
(`openai`, `lorax-client`, plain HTTP), each answer validated against the published schemas
(tests/specs/): a Model by id, legacy completions, LoRAX's OpenAI routes and its root route,
`/lorax/info`, and a native SSE stream that ends cleanly once its answer has."""

import lorax
import openai
import pytest
import requests

from tests.e2e.clients import Account
from tests.e2e.servers import local_deployment
from tests.e2e.test_api_clients import sse_events, streamed_text
from tests.schemas import validate
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_server_url(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("routes")
    with local_deployment(tmp_path, TEST_MODEL_DIR, RATE_LIMIT="100000/minute") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def carol(live_server_url):
    return Account(live_server_url, "routes-carol")


def openai_client(account, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=account.base_url + base, api_key=account.key, max_retries=0)


def saved_content(account, completion_id: str) -> str:
    message_id = completion_id.split("-", 1)[1]
    return account.get(f"/api/v1/messages/{message_id}/").json()["content"]


# --- OpenAI: models -------------------------------------------------------------------------
def test_it_retrieves_each_listed_model_by_id(carol):
    client = openai_client(carol)

    for listed in client.models.list():
        raw = client.models.with_raw_response.retrieve(listed.id)
        validate("openai-chat", "Model", raw.http_response.json())
        assert raw.parse().id == listed.id
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("no-such-adapter")
    assert raised.value.code == "model_not_found"


# --- OpenAI: chat, the spec's required fields -----------------------------------------------
def test_it_answers_chat_with_every_field_the_spec_requires(carol):
    client = openai_client(carol)
    messages = [{"role": "user", "content": "Hi"}]

    raw = client.chat.completions.with_raw_response.create(
        model="demo-poet", messages=messages, max_tokens=6
    )
    body = raw.http_response.json()
    validate("openai-chat", "CreateChatCompletionResponse", body)
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"]["refusal"] is None

    stream = client.chat.completions.create(
        model="demo-poet", messages=messages, max_tokens=6, stream=True
    )
    chunks = [chunk.model_dump(exclude_unset=True) for chunk in stream]
    assert all(choice["logprobs"] is None for chunk in chunks for choice in chunk["choices"])
    for chunk in chunks:
        validate("openai-chat", "CreateChatCompletionStreamResponse", chunk)


# --- OpenAI: legacy completions -------------------------------------------------------------
def test_it_completes_a_prompt_for_the_openai_client_and_records_it(carol):
    client = openai_client(carol)

    raw = client.completions.with_raw_response.create(
        model="demo-chef", prompt="Once upon a time", max_tokens=8, seed=2
    )
    completion = raw.parse()

    validate("openai-completions", "CreateCompletionResponse", raw.http_response.json())
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text and completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 8
    assert saved_content(carol, completion.id) == completion.choices[0].text


def test_it_streams_a_completion_to_the_openai_client_with_usage_last(carol):
    chunks = list(
        openai_client(carol).completions.create(
            model="base",
            prompt="Count",
            max_tokens=8,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert all(chunk.object == "text_completion" for chunk in chunks)
    assert chunks[-2].choices[0].finish_reason == "length"
    finish = chunks[-2].model_dump(exclude_unset=True)
    validate("openai-completions", "CreateCompletionResponse", finish)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert saved_content(carol, chunks[0].id) == text


def test_it_refuses_completion_parameters_it_does_not_implement_by_name(carol):
    client = openai_client(carol)

    for fields, param in [
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"suffix": "end"}, "suffix"),
        ({"prompt": ["one", "two"]}, "prompt"),
    ]:
        with pytest.raises(openai.BadRequestError) as raised:
            client.completions.create(**{"model": "base", "prompt": "Hi", **fields})
        assert raised.value.body["param"] == param and param in raised.value.message
    # The neutral values that clients such as LangChain always send ask for nothing.
    neutral = client.completions.create(
        model="base", prompt="Hi", max_tokens=2, frequency_penalty=0, presence_penalty=0,
        best_of=1, echo=False, logit_bias={},
    )
    assert neutral.usage.completion_tokens == 2


# --- LoRAX ----------------------------------------------------------------------------------
def test_it_serves_openai_routes_under_the_lorax_base_url(carol):
    client = openai_client(carol, "/lorax/v1")

    chat = client.chat.completions.create(
        model="demo-terse", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    completion = client.completions.create(model="demo-terse", prompt="Hi", max_tokens=4)

    assert chat.choices[0].message.content and chat.usage.completion_tokens > 0
    assert completion.choices[0].text and completion.usage.completion_tokens == 4


def test_it_generates_at_the_lorax_root_route_with_and_without_streaming(carol):
    client = lorax.Client(f"{carol.base_url}/lorax/", headers=carol.headers)

    answer = client.generate("Once", adapter_id="demo-chef", max_new_tokens=6)
    tokens = list(client.generate_stream("Once", adapter_id="demo-chef", max_new_tokens=6))

    assert answer.details.generated_tokens == 6
    assert tokens[-1].generated_text == answer.generated_text
    raw = carol.post("/lorax/", {"inputs": "Once", "parameters": {"max_new_tokens": 3}})
    assert raw.status_code == 200
    validate("lorax", "GenerateResponse", raw.json()[0])


def test_it_describes_the_model_as_lorax_info_does_in_tokens(live_server_url):
    info = requests.get(f"{live_server_url}/lorax/info", timeout=30).json()

    validate("lorax", "Info", info)
    # The demo model reads 65536 positions; the test server's token budget is larger.
    assert info["max_total_tokens"] == 65536
    assert info["max_input_length"] == 65535
    assert info["model_device_type"] == "cpu" and info["model_dtype"] == "torch.float32"


# --- native SSE after the end ---------------------------------------------------------------
def test_it_ends_a_reconnect_to_a_finished_answer_cleanly(carol):
    sent = carol.send("Hello!", max_tokens=6)
    first = carol.get(sent["stream"], stream=True)
    events = sse_events(first)
    carol.wait_for_status(sent["message"])
    last = events[-1]["id"]

    after_end = carol.get(sent["stream"], headers={**carol.headers, "Last-Event-ID": last})
    tail = sse_events(
        carol.get(sent["stream"], stream=True, headers={**carol.headers, "Last-Event-ID": "1"})
    )

    assert after_end.status_code == 204 and after_end.content == b""
    assert tail == events[2:] and streamed_text(events) == carol.get(
        f"/api/v1/messages/{sent['message']}/"
    ).json()["content"]


def test_it_tells_an_event_source_how_long_to_wait_before_reconnecting(carol):
    sent = carol.send("Hello!", max_tokens=3)

    first_line = next(carol.get(sent["stream"], stream=True).iter_lines(decode_unicode=True))

    assert first_line == "retry: 2000"
