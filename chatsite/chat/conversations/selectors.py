"""Reads of conversations and messages, always scoped to their owner."""

from django.db.models import Q

from chatsite.chat.models import Conversation, Message
from chatsite.chat.streams.lifecycle import CUT_REASONS
from chatsite.errors import ChatError
from inference.types import ChatTurn

# Statuses whose text the user saw as an answer and may build on.
_HISTORY_STATUSES = (
    Message.Status.COMPLETE,
    Message.Status.STOPPED,
    Message.Status.INTERRUPTED,
)

# Answers cut short that chat.continue may extend (a complete one only if cut at the limit).
CONTINUABLE_STATUSES = (
    Message.Status.STOPPED,
    Message.Status.INTERRUPTED,
    Message.Status.COMPLETE,
)


def conversations_of(user):
    return Conversation.objects.filter(owner=user).select_related("adapter")


def conversation_of(user, conversation_id: int) -> Conversation:
    conversation = conversations_of(user).filter(pk=conversation_id).first()
    if conversation is None:
        raise ChatError("not_found", "There is no conversation with that id.")
    return conversation


def conversations_matching(user, query: str):
    """The user's conversations whose title or any message contains `query`, newest first."""
    query = query.strip()
    conversations = conversations_of(user)
    if not query:
        return conversations
    return conversations.filter(
        Q(title__icontains=query) | Q(messages__content__icontains=query)
    ).distinct()


def messages_of(conversation: Conversation):
    return conversation.messages.select_related("adapter")


def message_of(user, message_id: int, *, role: str | None = None) -> Message:
    messages = Message.objects.filter(pk=message_id, conversation__owner=user)
    if role:
        messages = messages.filter(role=role)
    message = messages.select_related("adapter").first()
    if message is None:
        raise ChatError("not_found", "There is no message with that id.")
    return message


def can_continue(answer: Message) -> bool:
    if not answer.content or answer.status not in CONTINUABLE_STATUSES:
        return False
    return answer.status != Message.Status.COMPLETE or answer.finish_reason in CUT_REASONS


def branch_tip(conversation: Conversation) -> Message | None:
    return conversation.messages.order_by("-created_at", "-id").first()


def history_of(conversation: Conversation) -> list[Message]:
    """Every message of the conversation, in one read (for `newest`, `message_among` and
    `prompt_turns`, which an exchange needs together)."""
    return list(conversation.messages.all())


def newest(messages: list[Message]) -> Message | None:
    """`branch_tip` of messages already read."""
    return max(messages, key=lambda message: (message.created_at, message.pk), default=None)


def message_among(messages: list[Message], message_id: int) -> Message:
    """The message of that id among a conversation's messages (`history_of`)."""
    for message in messages:
        if message.pk == message_id:
            return message
    raise ChatError("not_found", "There is no message with that id in this conversation.")


def prompt_turns(
    conversation: Conversation, last: Message, messages: list[Message] | None = None
) -> tuple[ChatTurn, ...]:
    """The system prompt and the branch that ends at `last`, oldest first. `last` is always
    included (an answer being continued is live, yet it is the turn to extend). `messages`:
    the conversation's, when the caller has them (else they are read)."""
    if messages is None:
        messages = history_of(conversation)
    by_id = {message.pk: message for message in messages}
    chain = []
    message = by_id.get(last.pk)
    while message is not None:
        if message.pk == last.pk or message.role == Message.Role.USER or (
            message.status in _HISTORY_STATUSES and message.content
        ):
            chain.append(ChatTurn(role=message.role, content=message.content))
        message = by_id.get(message.parent_id)
    chain.reverse()
    if conversation.system_prompt:
        chain.insert(0, ChatTurn(role="system", content=conversation.system_prompt))
    return tuple(chain)


def live_generations_count(user) -> int:
    """Answers of `user` still being generated, in any process."""
    return Message.objects.filter(
        conversation__owner=user, role=Message.Role.ASSISTANT, status__in=Message.LIVE_STATUSES
    ).count()
