"""Each conversation knows where it came from, so the sidebar can keep API calls apart."""

import pytest

from chatsite.chat.conversations import services
from chatsite.chat.models import Conversation
from chatsite.chat.streams.protocol import GenerationParams

pytestmark = pytest.mark.django_db


def source_of(exchange) -> str:
    return Conversation.objects.get(pk=exchange.conversation.pk).source


def test_it_marks_chat_page_conversations_as_chat(owner):
    exchange = services.exchange_start(
        user=owner, conversation_id=None, content="Hi", adapter_slug=None, params=GenerationParams()
    )
    assert source_of(exchange) == "chat"


def test_it_marks_each_openai_call_as_openai(owner):
    exchange = services.transcript_exchange_start(
        user=owner, turns=[("user", "Hi")], adapter_slug=None, params=GenerationParams()
    )
    assert source_of(exchange) == "openai"


def test_it_marks_each_lorax_call_as_lorax(owner):
    exchange = services.exchange_start(
        user=owner, conversation_id=None, content="Once", adapter_slug=None,
        params=GenerationParams(), raw_prompt=True,
    )
    assert source_of(exchange) == "lorax"


def test_it_sends_the_source_to_the_sidebar_and_keeps_the_order_on_rename(client, owner):
    client.force_login(owner)
    older = services.conversation_create(owner=owner, adapter=None, title="Older")
    services.conversation_create(owner=owner, adapter=None, title="Newer",
                                         source=Conversation.Source.OPENAI)
    client.post(f"/c/{older.pk}/rename", {"title": "Renamed"}, content_type="application/json")
    results = client.get("/c/search").json()["results"]
    assert [(r["title"], r["source"]) for r in results] == [("Newer", "openai"), ("Renamed", "chat")]
