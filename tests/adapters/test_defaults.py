"""An adapter's defaults (system prompt, temperature, max tokens) apply unless the user says otherwise."""

import pytest

from chatsite.chat.conversations import services
from chatsite.chat.models import Conversation
from chatsite.chat.streams.protocol import GenerationParams
from inference.types import ChatTurn


@pytest.fixture
def poet(demo_adapters):
    poet = demo_adapters["demo-poet"]
    poet.system_prompt = "Answer in verse."
    poet.temperature = 0.0
    poet.max_tokens = 5
    poet.save()
    return poet


def start(user, params=None, conversation_id=None, adapter="demo-poet"):
    return services.exchange_start(
        user=user, conversation_id=conversation_id, content="Hello", adapter_slug=adapter,
        params=params or GenerationParams(),
    ).request


@pytest.mark.django_db
def test_it_applies_the_adapters_defaults(owner, poet):
    request = start(owner)

    assert request.messages[0] == ChatTurn(role="system", content="Answer in verse.")
    assert (request.params.temperature, request.params.max_new_tokens) == (0.0, 5)


@pytest.mark.django_db
def test_it_lets_the_users_own_values_win(owner, poet):
    request = start(owner, GenerationParams(temperature=1.2, max_tokens=9))

    assert (request.params.temperature, request.params.max_new_tokens) == (1.2, 9)


@pytest.mark.django_db
def test_it_keeps_the_conversations_own_system_prompt(owner, poet):
    conversation = Conversation.objects.create(owner=owner, adapter=poet, system_prompt="Be brief.")

    request = start(owner, conversation_id=conversation.pk)

    assert [t for t in request.messages if t.role == "system"] == [ChatTurn("system", "Be brief.")]


@pytest.mark.django_db
def test_it_uses_the_servers_defaults_without_an_adapter(owner, poet, settings):
    request = start(owner, adapter="")

    assert request.messages[0].role == "user"
    assert request.params.max_new_tokens == settings.DEFAULT_MAX_NEW_TOKENS


@pytest.mark.django_db
def test_it_caps_an_adapters_max_tokens_at_the_servers_limit(owner, poet, settings):
    settings.MAX_NEW_TOKENS = 4

    assert start(owner).params.max_new_tokens == 4


@pytest.mark.django_db(transaction=True)
async def test_it_streams_no_more_than_the_adapters_max_tokens(owner, poet, socket_for):
    socket = await socket_for(owner)

    await socket.chat("Tell me a long story", adapter="demo-poet")
    end = (await socket.until_end())[-1]["payload"]

    assert end["usage"]["completion_tokens"] <= 5
    assert end["reason"] in ("stop", "length")
