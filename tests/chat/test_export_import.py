"""Export a conversation (or all) as Markdown and as JSONL in the OpenAI `messages` shape, and
import that JSONL back; only the owner's conversations, ever."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chatsite.chat.models import Conversation, Message
from inference.training import read_chats

pytestmark = pytest.mark.django_db


@pytest.fixture
def rivers(owner, demo_adapters):
    """A conversation with a system prompt, a regenerated answer (two branches) and a follow-up."""
    poet = demo_adapters["demo-poet"]
    conversation = Conversation.objects.create(owner=owner, title="Rivers", system_prompt="Be brief.")

    def add(role, content, parent, adapter=None):
        return Message.objects.create(conversation=conversation, role=role, content=content,
                                      parent=parent, adapter=adapter)

    question = add("user", "Name a river.", None)
    add("assistant", "The Nile (an older answer).", question, poet)
    answer = add("assistant", "The Amazon.", question, poet)
    follow_up = add("user", "How long is it?", answer)
    add("assistant", "About 6,400 km.", follow_up)
    return conversation


def export(client, conversation, fmt):
    return client.get(f"/c/{conversation.pk}/export.{fmt}")


def test_it_exports_the_branch_on_show_as_openai_messages(client, owner, rivers, tmp_path):
    client.force_login(owner)
    response = export(client, rivers, "jsonl")
    assert response.status_code == 200
    assert 'filename="patchbay-conversation-' in response["Content-Disposition"]
    (record,) = [json.loads(line) for line in response.content.decode().splitlines()]
    assert [(m["role"], m["content"]) for m in record["messages"]] == [
        ("system", "Be brief."), ("user", "Name a river."), ("assistant", "The Amazon."),
        ("user", "How long is it?"), ("assistant", "About 6,400 km."),
    ]
    assert record["messages"][2]["adapter"] == "demo-poet"
    exported = tmp_path / "chats.jsonl"
    exported.write_bytes(response.content)
    assert len(read_chats(exported)) == 1  # what train_adapter reads


def test_it_exports_markdown_a_person_can_read(client, owner, rivers):
    client.force_login(owner)
    text = export(client, rivers, "md").content.decode()
    assert text.startswith("# Rivers\n")
    assert "**System prompt:** Be brief." in text
    assert "### You\n\nName a river." in text
    assert "### demo-poet\n\nThe Amazon." in text
    assert "### Base model\n\nAbout 6,400 km." in text
    assert "The Nile" not in text  # the other branch is not the one on show


def test_it_exports_all_of_a_users_conversations_and_only_theirs(client, owner, other_user, rivers):
    Conversation.objects.create(owner=owner, title="Second")
    Conversation.objects.create(owner=other_user, title="Not yours")
    client.force_login(owner)
    lines = client.get("/c/export.jsonl").content.decode().splitlines()
    assert len(lines) == 2
    markdown = client.get("/c/export.md").content.decode()
    assert "# Rivers" in markdown and "# Second" in markdown and "Not yours" not in markdown


def test_it_answers_404_for_another_users_conversation(client, other_user, rivers):
    client.force_login(other_user)
    assert export(client, rivers, "jsonl").status_code == 404
    assert export(client, rivers, "md").status_code == 404


def test_it_refuses_an_unknown_format_and_anonymous_visitors(client, owner, rivers):
    assert export(client, rivers, "jsonl").status_code == 302  # to the sign-in page
    client.force_login(owner)
    assert client.get(f"/c/{rivers.pk}/export.html").status_code == 404


def upload(client, content: bytes, name="chats.jsonl"):
    return client.post("/c/import", {"file": SimpleUploadedFile(name, content)})


def test_it_imports_an_export_as_new_conversations_of_the_importer(client, owner, other_user, rivers):
    client.force_login(owner)
    exported = client.get("/c/export.jsonl").content
    client.force_login(other_user)
    response = upload(client, exported)
    assert response.status_code == 200 and response.json()["imported"] == 1
    (made,) = Conversation.objects.filter(owner=other_user)
    assert made.system_prompt == "Be brief."
    assert made.title == "Name a river."
    client.force_login(other_user)
    again = json.loads(export(client, made, "jsonl").content)
    original = json.loads(exported)
    strip = lambda messages: [(m["role"], m["content"]) for m in messages]  # noqa: E731
    assert strip(again["messages"]) == strip(original["messages"])


def test_it_imports_a_pretty_printed_json_document(client, owner):
    client.force_login(owner)
    document = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    response = upload(client, json.dumps(document, indent=2).encode(), name="one.json")
    assert response.json()["imported"] == 1


def test_it_refuses_a_bad_file_saying_where_and_imports_nothing(client, owner):
    client.force_login(owner)
    good = json.dumps({"messages": [{"role": "user", "content": "Hi"}]})
    bad = json.dumps({"messages": [{"role": "robot", "content": "Beep"}]})
    response = upload(client, f"{good}\n{bad}\n".encode())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_import"
    assert "line 2" in response.json()["error"]["message"]
    assert not Conversation.objects.filter(owner=owner).exists()


def test_it_asks_for_a_file_when_none_is_sent(client, owner):
    client.force_login(owner)
    response = client.post("/c/import", {})
    assert response.status_code == 400
    assert "file" in response.json()["error"]["message"]
