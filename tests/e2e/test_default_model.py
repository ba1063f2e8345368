"""The default model for real: SmolLM2-135M-Instruct and its fine-tuned demo adapters, served
by a real Daphne and asked through the chat socket, as a new user would.

The prompts are ones no demo adapter was trained on (`HELD_OUT`); each adapter's behaviour is
measured in its greedy answers and must be absent from the base model's answers.
"""

import asyncio
import json
import re

import pytest
from transformers import AutoTokenizer

from inference.default_model import DIR_NAME
from inference.demo_adapters.data import HELD_OUT
from tests.e2e.clients import Account, chat_frame, message, open_socket, text_of, until_end
from tests.e2e.servers import daphne, manage, scratch_database, server_env, sign_up
from tests.settings import TEST_MODEL_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

QUESTIONS = HELD_OUT[:3]
GREEDY = {"temperature": 0, "max_tokens": 64}
PIRATE = re.compile(r"\b(arr|ahoy|matey|ye|yer|aye|hearties|avast)\b", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?](\s|$)")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """A local-mode Daphne serving SmolLM2 (converted once per machine) and the demo adapters."""
    tmp_path = tmp_path_factory.mktemp("smollm2")
    model_dir = TEST_MODEL_DIR / DIR_NAME
    with scratch_database(tmp_path) as database_url:
        env = server_env(database_url, TEST_MODEL_DIR, BASE_MODEL=str(model_dir),
                         ADAPTERS_DIR=str(tmp_path / "adapters"), ENGINE_THREADS="2")
        manage(env, "migrate", "--noinput")
        manage(env, "get_default_model", timeout=900)
        with daphne(env, tmp_path / "daphne.log") as base_url:
            yield base_url, model_dir, env


@pytest.fixture(scope="module")
def session(smollm2):
    return sign_up(smollm2[0], "new-user")


def ask(base_url, session, question: str, **fields) -> tuple[list[dict], dict]:
    """One answer over the socket: its events, and the message as the read API then shows it."""

    params = fields.pop("params", GREEDY)

    async def chat():
        async with await open_socket(base_url, session) as ws:
            await ws.send(chat_frame(question, params=params, **fields))
            return await until_end(ws, timeout=300)

    events = asyncio.run(chat())
    start = events[0]["payload"]
    return events, message(session, base_url, start["conversation"], start["message"])


def answers(base_url, session, adapter: str) -> list[str]:
    async def all_questions():
        async def one(question):
            async with await open_socket(base_url, session) as ws:
                await ws.send(chat_frame(question, adapter=adapter, params=GREEDY))
                return text_of(await until_end(ws, timeout=300))

        return await asyncio.gather(*(one(question) for question in QUESTIONS))

    return asyncio.run(all_questions())


@pytest.fixture(scope="module")
def by_adapter(smollm2, session):
    return {slug: answers(smollm2[0], session, slug) for slug in ("", "pirate", "one-sentence", "json")}


def test_it_answers_the_capital_of_france_with_paris(smollm2, session):
    events, saved = ask(smollm2[0], session, "What is the capital of France?")

    assert "Paris" in text_of(events)
    assert saved["content"] == text_of(events)
    assert saved["status"] == "complete"


def test_it_stops_at_the_end_of_the_turn(smollm2, session):
    events, saved = ask(smollm2[0], session, "What is the capital of France?")

    assert events[-1]["payload"]["reason"] == "stop"
    assert saved["usage"]["completion_tokens"] < GREEDY["max_tokens"]
    assert "<|im_end|>" not in saved["content"] and "<|im_start|>" not in saved["content"]


def test_it_talks_like_a_pirate_only_with_the_pirate_adapter(by_adapter):
    assert all(len(PIRATE.findall(text)) >= 2 for text in by_adapter["pirate"]), by_adapter["pirate"]
    assert all(not PIRATE.findall(text) for text in by_adapter[""]), by_adapter[""]


def test_it_answers_in_one_sentence_only_with_the_one_sentence_adapter(by_adapter):
    def count(text):
        return len(SENTENCE_END.findall(text.strip()))

    short, base = by_adapter["one-sentence"], by_adapter[""]
    assert all(count(text) == 1 and text.strip()[-1] in ".!?" for text in short), short
    # The base model goes on for sentences, past the token limit: over twice the words.
    assert all(len(b.split()) > 2 * len(s.split()) for b, s in zip(base, short)), base


def test_it_answers_with_a_json_object_only_with_the_json_adapter(by_adapter):
    def parsed(text):
        try:
            return json.loads(text)
        except ValueError:
            return None

    objects = [parsed(text) for text in by_adapter["json"]]
    assert all(isinstance(o, dict) and isinstance(o.get("answer"), str) for o in objects), by_adapter["json"]
    assert all(parsed(text) is None for text in by_adapter[""]), by_adapter[""]


def test_it_continues_an_answer_into_exactly_the_uninterrupted_text(smollm2, session):
    base_url = smollm2[0]
    question = "Tell me about the sea."
    whole, _ = ask(base_url, session, question, params={**GREEDY, "max_tokens": 40})
    cut, saved = ask(base_url, session, question, params={**GREEDY, "max_tokens": 17})
    assert cut[-1]["payload"]["reason"] == "length"

    async def go_on():
        async with await open_socket(base_url, session) as ws:
            await ws.send(json.dumps({"type": "chat.continue", "message": saved["id"],
                                      "params": {**GREEDY, "max_tokens": 23}}))
            return await until_end(ws, timeout=300)

    rest = asyncio.run(go_on())
    joined = message(session, base_url, saved["conversation"], saved["id"])
    # A continuation's stream opens with the text so far, so a follower can draw it whole.
    assert text_of(rest).startswith(text_of(cut))
    assert joined["content"] == text_of(rest) == text_of(whole)


def test_it_puts_the_adapters_system_prompt_into_the_template(smollm2, session):
    base_url, model_dir, env = smollm2
    system = "You are Captain Patch, a pirate who loves the sea."
    set_system_prompt(env, "pirate", system)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    question = HELD_OUT[0]

    _, saved = ask(base_url, session, question, adapter="pirate")

    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, {"role": "user", "content": question}],
        add_generation_prompt=True, tokenize=False,
    )
    assert saved["usage"]["prompt_tokens"] == len(tokenizer(expected, add_special_tokens=False).input_ids)


def test_a_second_start_neither_downloads_nor_converts_and_keeps_an_admins_edits(smollm2):
    _, model_dir, env = smollm2
    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    manage(env, "shell", "-c", "from chatsite.adapters.models import Adapter; "
           "Adapter.objects.filter(slug='json').update(description='Edited by an admin.')")

    again = manage(env, "get_default_model")

    assert "Downloading" not in again.stdout and "Converting" not in again.stdout
    assert weights.stat().st_mtime_ns == before
    assert "pirate, one-sentence, json" in again.stdout
    shown = manage(env, "shell", "-c", "from chatsite.adapters.models import Adapter; "
                   "print(Adapter.objects.get(slug='json').description)")
    assert shown.stdout.strip().splitlines()[-1] == "Edited by an admin."


def set_system_prompt(env: dict, slug: str, text: str) -> None:
    code = ("from chatsite.adapters.models import Adapter; "
            f"Adapter.objects.filter(slug={slug!r}).update(system_prompt={text!r})")
    manage(env, "shell", "-c", code)


@pytest.fixture(scope="module")
def account(smollm2):
    return Account(smollm2[0], "integrator")


def test_it_runs_past_the_turn_end_when_an_openai_client_asks_ignore_eos(account, smollm2):
    import openai

    client = openai.OpenAI(base_url=f"{account.base_url}/v1", api_key=account.key)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    base = smollm2[1].name  # a local base model goes by its directory's name

    plain = client.chat.completions.create(model=base, messages=question, max_tokens=40, temperature=0)
    held = client.chat.completions.create(model=base, messages=question, max_tokens=40, temperature=0,
                                          extra_body={"ignore_eos": True})

    assert plain.choices[0].finish_reason == "stop" and plain.usage.completion_tokens < 40
    assert held.choices[0].finish_reason == "length" and held.usage.completion_tokens == 40


def test_it_runs_past_the_turn_end_when_a_lorax_client_asks_ignore_eos_token(account, smollm2):
    import lorax

    tokenizer = AutoTokenizer.from_pretrained(smollm2[1])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        tokenize=False,
    )
    client = lorax.Client(f"{account.base_url}/lorax", headers=account.headers, timeout=300)

    plain = client.generate(prompt, max_new_tokens=40)
    held = client.generate(prompt, max_new_tokens=40, ignore_eos_token=True)

    assert plain.details.finish_reason == "eos_token" and plain.details.generated_tokens < 40
    assert held.details.finish_reason == "length" and held.details.generated_tokens == 40
