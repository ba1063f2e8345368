"""Log-probabilities and token details through the real clients against a live Daphne: the
openai SDK's `logprobs`/`top_logprobs` streamed and not, lorax-client's `details` (real ids,
logprobs, `special`, the end token), `decoder_input_details` and `return_k_alternatives`.
Responses validate against the published schemas (tests/schemas.py)."""

import lorax
import openai
import pytest
import requests
from transformers import AutoTokenizer

from tests import schemas
from tests.e2e.clients import Account
from tests.e2e.servers import daphne, demo_database, server_env
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

PROMPT = "Tell me about the river."


@pytest.fixture(scope="module")
def alice(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("logprobs")
    with demo_database(tmp_path, TEST_MODEL_DIR) as database_url:
        env = server_env(database_url, TEST_MODEL_DIR, API_RATE_LIMIT="100000/minute")
        with daphne(env, tmp_path / "daphne.log") as base_url:
            yield Account(base_url, "logprobs-alice")


@pytest.fixture(scope="module")
def tokenizer(demo_model):
    return AutoTokenizer.from_pretrained(demo_model.base_dir)


def openai_client(account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{account.base_url}/v1", api_key=account.key, max_retries=0)


def lorax_client(account) -> lorax.Client:
    return lorax.Client(f"{account.base_url}/lorax", headers={"Authorization": f"Bearer {account.key}"})


def ask(**fields) -> dict:
    return {"model": "demo-poet", "messages": [{"role": "user", "content": PROMPT}], **fields}


def check_openai_tokens(content: list, text: str, *, greedy: bool, top: int) -> None:
    assert content, "no tokens listed"
    assert "".join(token.token for token in content) == text
    assert b"".join(bytes(token.bytes) for token in content) == text.encode()
    for token in content:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == top
        values = [alt.logprob for alt in token.top_logprobs]
        assert values == sorted(values, reverse=True)
        if greedy:  # the pick is the most likely token
            assert token.top_logprobs[0].token == token.token
            assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)


def test_it_reports_logprobs_with_top_alternatives_to_the_openai_client(alice):
    raw = openai_client(alice).chat.completions.with_raw_response.create(
        **ask(max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    )

    schemas.validate("openai-chat", "CreateChatCompletionResponse", raw.http_response.json())
    choice = raw.parse().choices[0]
    check_openai_tokens(choice.logprobs.content, choice.message.content, greedy=True, top=3)
    assert len(choice.logprobs.content) <= raw.parse().usage.completion_tokens


def test_it_streams_logprobs_chunk_by_chunk_to_the_openai_client(alice):
    stream = openai_client(alice).chat.completions.create(
        **ask(max_tokens=12, temperature=0.8, seed=5, logprobs=True, top_logprobs=2, stream=True)
    )

    text, content = "", []
    for chunk in stream:
        schemas.validate("openai-chat", "CreateChatCompletionStreamResponse", chunk.to_dict())
        choice = chunk.choices[0]
        if choice.delta.content:
            text += choice.delta.content
            content += choice.logprobs.content
    check_openai_tokens(content, text, greedy=False, top=2)
    plain = openai_client(alice).chat.completions.create(
        **ask(max_tokens=12, temperature=0.8, seed=5)
    )
    assert plain.choices[0].message.content == text  # asking changes nothing else
    assert plain.choices[0].logprobs is None


def test_it_gives_lorax_the_real_tokens_with_the_end_token_last(alice, tokenizer):
    client = lorax_client(alice)
    end = tokenizer.eos_token_id
    # Whichever way the demo model's answer ends, the list and the count agree.
    for max_new_tokens in (4, 30):
        response = client.generate(
            PROMPT, adapter_id="demo-poet", max_new_tokens=max_new_tokens, details=True
        )
        details = response.details
        assert len(details.tokens) == details.generated_tokens
        ids = [token.id for token in details.tokens]
        assert tokenizer.decode(ids, skip_special_tokens=True) == response.generated_text
        assert all(token.logprob <= 0 for token in details.tokens)
        if details.finish_reason.value == "eos_token":
            assert details.tokens[-1].id == end and details.tokens[-1].special
        else:
            assert details.finish_reason.value == "length"
            assert not any(token.special for token in details.tokens)
    raw = requests.post(
        f"{alice.base_url}/lorax/generate",
        json={"inputs": PROMPT, "parameters": {"adapter_id": "demo-poet", "max_new_tokens": 6}},
        headers={"Authorization": f"Bearer {alice.key}"},
        timeout=60,
    )
    schemas.validate("lorax", "GenerateResponse", raw.json())


def test_it_ends_lorax_answers_with_the_reason_that_really_ended_them(alice, tokenizer):
    client = lorax_client(alice)
    free = client.generate(PROMPT, adapter_id="demo-poet", max_new_tokens=12, details=True)
    word = free.generated_text.split()[1] if len(free.generated_text.split()) > 1 else None
    if word is None:
        pytest.skip("the demo model's answer has a single word")

    stopped = client.generate(
        PROMPT, adapter_id="demo-poet", max_new_tokens=12, details=True, stop_sequences=[word]
    )

    assert stopped.details.finish_reason.value == "stop_sequence"
    assert len(stopped.details.tokens) == stopped.details.generated_tokens
    assert word not in stopped.generated_text


def test_it_gives_lorax_the_prompt_tokens_with_decoder_input_details(alice, tokenizer):
    response = lorax_client(alice).generate(
        PROMPT, adapter_id="demo-poet", max_new_tokens=3, decoder_input_details=True
    )

    prefill = response.details.prefill
    assert [token.id for token in prefill] == tokenizer(PROMPT).input_ids
    assert prefill[0].logprob is None
    assert all(token.logprob <= 0 for token in prefill[1:])
    raw = requests.post(
        f"{alice.base_url}/lorax/generate",
        json={
            "inputs": PROMPT,
            "parameters": {"max_new_tokens": 3, "decoder_input_details": True, "details": True},
        },
        headers={"Authorization": f"Bearer {alice.key}"},
        timeout=60,
    )
    schemas.validate("lorax", "GenerateResponse", raw.json())
    assert len(raw.json()["details"]["prefill"]) == len(prefill)


def test_it_streams_lorax_tokens_one_event_each(alice, tokenizer):
    events = list(
        lorax_client(alice).generate_stream(PROMPT, adapter_id="demo-poet", max_new_tokens=10)
    )

    last = events[-1]
    assert last.details.generated_tokens == len(events)
    assert last.generated_text == "".join(e.token.text for e in events if not e.token.special)
    assert tokenizer.decode([e.token.id for e in events], skip_special_tokens=True) == (
        last.generated_text
    )
    for event in events:
        schemas.validate("lorax", "StreamResponse", event.model_dump(mode="json"))
        assert event.token.logprob <= 0


def test_it_gives_lorax_the_alternatives_it_asks_for(alice):
    response = lorax_client(alice).generate(
        PROMPT, adapter_id="demo-poet", max_new_tokens=6, return_k_alternatives=2
    )

    for token in response.details.tokens:
        alternatives = token.alternative_tokens
        assert len(alternatives) == 2
        assert alternatives[0].id == token.id  # greedy (LoRAX's default): the pick is first
        assert alternatives[0].logprob == pytest.approx(token.logprob)
        assert alternatives[1].logprob <= alternatives[0].logprob


def test_it_streams_lorax_tokens_without_details_when_asked(alice):
    events = list(
        lorax_client(alice).generate_stream(
            PROMPT, adapter_id="demo-poet", max_new_tokens=5, details=False
        )
    )

    assert events[-1].details is None
    assert all(event.token.logprob <= 0 for event in events)


def test_it_reports_legacy_completion_logprobs_streamed_and_not(alice):
    client = openai_client(alice)
    ask_legacy = {"model": "demo-poet", "prompt": PROMPT, "max_tokens": 10, "temperature": 0}

    raw = client.completions.with_raw_response.create(**ask_legacy, logprobs=2)
    chunks = list(client.completions.create(**ask_legacy, logprobs=2, stream=True))

    schemas.validate("openai-completions", "CreateCompletionResponse", raw.http_response.json())
    choice = raw.parse().choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert logprob <= 0
        assert top[token] == pytest.approx(logprob)  # greedy: the pick is among the top two
        assert len(top) <= 2
    streamed = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].text]
    assert [t for part in streamed for t in part.tokens] == logprobs.tokens
    assert [o for part in streamed for o in part.text_offset] == logprobs.text_offset
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.completions.create(**ask_legacy, logprobs=6)
