"""Celery mode: token details travel from the worker's engine through the token log to the
API (OpenAI `logprobs`, streamed and not; LoRAX `details` with `decoder_input_details`)."""

import lorax
import openai
import pytest
from transformers import AutoTokenizer

from tests import schemas
from tests.e2e.clients import Account

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(400)]

PROMPT = "Tell me about the river."


def test_it_reports_openai_logprobs_from_the_worker_streamed_and_not(stack):
    client = openai.OpenAI(
        base_url=f"{stack.base_url}/v1", api_key=Account(stack.base_url, "lp-jo").key, max_retries=0
    )
    ask = {
        "model": "demo-poet",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 10,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }

    raw = client.chat.completions.with_raw_response.create(**ask)
    streamed = [chunk for chunk in client.chat.completions.create(**ask, stream=True)]

    schemas.validate("openai-chat", "CreateChatCompletionResponse", raw.http_response.json())
    choice = raw.parse().choices[0]
    content = choice.logprobs.content
    assert "".join(token.token for token in content) == choice.message.content
    assert all(t.logprob <= 0 and t.top_logprobs[0].token == t.token for t in content)
    chunks = [c.choices[0] for c in streamed if c.choices and c.choices[0].delta.content]
    assert [t.token for c in chunks for t in c.logprobs.content] == [t.token for t in content]


def test_it_gives_lorax_the_real_tokens_and_the_prompt_from_the_worker(stack, demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    account = Account(stack.base_url, "lp-kim")
    client = lorax.Client(f"{stack.base_url}/lorax", headers=account.headers)

    response = client.generate(
        PROMPT, adapter_id="demo-chef", max_new_tokens=8, decoder_input_details=True
    )

    details = response.details
    assert len(details.tokens) == details.generated_tokens
    ids = [token.id for token in details.tokens]
    assert tokenizer.decode(ids, skip_special_tokens=True) == response.generated_text
    assert [token.id for token in details.prefill] == tokenizer(PROMPT).input_ids
    assert details.prefill[0].logprob is None
    assert all(token.logprob <= 0 for token in details.tokens + details.prefill[1:])
