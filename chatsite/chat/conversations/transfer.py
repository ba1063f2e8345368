"""Export a user's conversations (Markdown to read, JSONL to reuse) and import them back.

The JSONL is the OpenAI `messages` shape, one `{"messages": [...]}` per conversation: the file
`manage.py train_adapter` reads (inference/training.py), so a chat export can train an adapter.
A conversation exports the branch on show at its newest message; the other branches stay home.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.chat.conversations import selectors, services
from chatsite.chat.models import Conversation, Message
from chatsite.errors import ChatError
from inference.training import TrainingError, chats_from_lines

IMPORT_MAX_BYTES = 20 * 1024 * 1024
IMPORT_MAX_CONVERSATIONS = 1000


def conversation_turns(conversation: Conversation) -> list[dict]:
    """The system prompt and the branch ending at the newest message, oldest first."""
    by_id = {message.pk: message for message in selectors.messages_of(conversation)}
    tip = selectors.branch_tip(conversation)
    chain = []
    message = by_id.get(tip.pk) if tip else None
    while message is not None:
        if message.role == Message.Role.USER or message.content:
            chain.append(message)
        message = by_id.get(message.parent_id)
    chain.reverse()
    turns = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
    return turns + [_turn(message) for message in chain]


def _turn(message: Message) -> dict:
    turn = {"role": message.role, "content": message.content}
    if message.role == Message.Role.ASSISTANT and message.adapter_id:
        turn["adapter"] = message.adapter.slug  # extra keys are ignored by readers of the shape
    return turn


def as_jsonl(conversations) -> str:
    lines = [json.dumps({"messages": conversation_turns(c)}, ensure_ascii=False) for c in conversations]
    return "".join(line + "\n" for line in lines)


def as_markdown(conversations) -> str:
    return "\n\n---\n\n".join(_markdown(conversation) for conversation in conversations) + "\n"


def _markdown(conversation: Conversation) -> str:
    when = timezone.localtime(conversation.updated_at).strftime("%Y-%m-%d %H:%M")
    parts = [f"# {conversation.title or 'Untitled'}", f"_Patchbay conversation, last active {when}_"]
    for turn in conversation_turns(conversation):
        if turn["role"] == "system":
            parts.append(f"**System prompt:** {turn['content']}")
        elif turn["role"] == "user":
            parts.append(f"### You\n\n{turn['content']}")
        else:
            parts.append(f"### {turn.get('adapter') or 'Base model'}\n\n{turn['content']}")
    return "\n\n".join(parts)


def conversations_import(*, user, data: bytes) -> list[Conversation]:
    """Conversations made from an export (JSONL, or one JSON object or array of them). All or
    nothing: a bad chat is refused with its line number and why, and nothing is imported."""
    chats = _parse(data)
    with transaction.atomic():
        return [_import_chat(user, chat) for chat in chats]


def _parse(data: bytes) -> list[list[dict]]:
    if len(data) > IMPORT_MAX_BYTES:
        raise ChatError("invalid_import", f"An import can be at most {IMPORT_MAX_BYTES // 2**20} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChatError("invalid_import", "The file is not UTF-8 text.") from None
    try:
        chats = chats_from_lines(_as_lines(text), "the file", need_answer=False)
    except TrainingError as error:
        raise ChatError("invalid_import", str(error)) from None
    if len(chats) > IMPORT_MAX_CONVERSATIONS:
        raise ChatError("invalid_import", f"An import can hold at most {IMPORT_MAX_CONVERSATIONS} conversations.")
    return chats


def _as_lines(text: str) -> list[str]:
    """JSONL as it is; a whole JSON document (pretty-printed, or an array) becomes lines."""
    try:
        document = json.loads(text)
    except ValueError:
        return text.splitlines()
    records = document if isinstance(document, list) else [document]
    return [json.dumps(record) for record in records]


def _import_chat(user, chat: list[dict]) -> Conversation:
    system = "\n\n".join(turn["content"] for turn in chat if turn["role"] == "system")
    turns = [turn for turn in chat if turn["role"] != "system"]
    for turn in turns:
        if len(turn["content"]) > settings.STREAM_MAX_BYTES:
            raise ChatError("invalid_import", "A message in the file is longer than this server keeps.")
    first_question = next((turn["content"] for turn in turns if turn["role"] == "user"), "")
    conversation = services.conversation_create(
        owner=user, adapter=None, title=services.title_from(first_question or "Imported"),
        system_prompt=system,
    )
    parent = None
    for turn in turns:
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=turn["role"], content=turn["content"],
            status=Message.Status.COMPLETE,
        )
    return conversation
