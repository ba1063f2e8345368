"""Writes of conversations and messages. The only place that changes their rows."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import adapter_for_user, adapter_ref
from chatsite.chat import selectors
from chatsite.chat.errors import ChatError
from chatsite.chat.models import Conversation, Message
from chatsite.chat.protocol import GenerationParams
from inference.types import Finished, GenerationRequest, SamplingParams

TITLE_CHARS = 60
TITLE_MAX_CHARS = 200


@dataclass(frozen=True)
class Exchange:
    """A user's message, the assistant message that will answer it, and the engine request."""

    conversation: Conversation
    user_message: Message
    assistant_message: Message
    request: GenerationRequest


def conversation_create(*, owner, adapter: Adapter | None, title: str = "", system_prompt: str = ""):
    return Conversation.objects.create(
        owner=owner, adapter=adapter, title=title[:200], system_prompt=system_prompt
    )


def conversation_rename(*, user, conversation_id: int, title: str) -> Conversation:
    title = " ".join(title.split())
    if not title:
        raise ChatError("invalid_title", "Give the conversation a name.")
    if len(title) > TITLE_MAX_CHARS:
        raise ChatError("invalid_title", f"A name can be at most {TITLE_MAX_CHARS} characters.")
    conversation = selectors.conversation_of(user, conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, user, conversation_id: int) -> None:
    selectors.conversation_of(user, conversation_id).delete()


def conversation_configure(
    *, user, conversation_id: int | None, adapter_slug: str, system_prompt: str
) -> Conversation:
    """Set a conversation's adapter ("" = base) and system prompt; a null id creates one."""
    if len(system_prompt) > settings.MAX_PROMPT_CHARS:
        raise ChatError(
            "invalid_content",
            f"A system prompt can be at most {settings.MAX_PROMPT_CHARS} characters.",
        )
    adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
    if conversation_id is None:
        return conversation_create(owner=user, adapter=adapter, system_prompt=system_prompt)
    conversation = selectors.conversation_of(user, conversation_id)
    conversation.adapter = adapter
    conversation.system_prompt = system_prompt
    conversation.save(update_fields=["adapter", "system_prompt", "updated_at"])
    return conversation


def exchange_start(
    *, user, conversation_id: int | None, content: str, adapter_slug: str | None,
    params: GenerationParams, parent_id: int | None = None, parent_given: bool = False,
) -> Exchange:
    """Record a user message and a pending answer, and describe the generation to run.

    The user message follows `parent_id` when `parent_given` (None: a new first message, as
    when the first message is edited), else the newest message of the conversation."""
    content = _checked_content(content)
    sampling = _sampling(params)
    with transaction.atomic():
        if conversation_id is None:
            if parent_given and parent_id is not None:
                raise ChatError("bad_request", "A new conversation has no message to follow.")
            adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
            conversation = conversation_create(
                owner=user, adapter=adapter, title=_title_from(content)
            )
        else:
            conversation = selectors.conversation_of(user, conversation_id)
            adapter = _choose_adapter(user, conversation, adapter_slug)
            if not conversation.title:
                conversation.title = _title_from(content)
                conversation.save(update_fields=["title", "updated_at"])
        if parent_given:
            parent = selectors.message_in(conversation, parent_id) if parent_id else None
        else:
            parent = selectors.branch_tip(conversation)
        user_message = Message.objects.create(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=content
        )
        answer = _pending_answer(user_message, adapter)
    return _exchange(user_message, answer, adapter, sampling)


def exchange_regenerate(
    *, user, message_id: int, adapter_slug: str | None, params: GenerationParams
) -> Exchange:
    """A new answer to the user message that assistant `message_id` answers (a sibling)."""
    sampling = _sampling(params)
    with transaction.atomic():
        previous = selectors.message_of(user, message_id, role=Message.Role.ASSISTANT)
        user_message = previous.parent
        adapter = _choose_adapter(user, previous.conversation, adapter_slug)
        answer = _pending_answer(user_message, adapter)
    return _exchange(user_message, answer, adapter, sampling)


def exchange_continue(*, user, message_id: int, params: GenerationParams) -> Exchange:
    """Extend a stopped, interrupted or length-cut answer in place, with its own adapter."""
    sampling = _sampling(params)
    with transaction.atomic():
        answer = selectors.message_of(user, message_id, role=Message.Role.ASSISTANT)
        if not selectors.can_continue(answer):
            raise ChatError(
                "bad_request",
                "Only a stopped, interrupted or length-cut answer with text can be continued.",
            )
        adapter = answer.adapter
        if adapter is not None:
            adapter_for_user(user, adapter.slug)  # still allowed to use it
        # Read before the status changes: the partial answer is the turn to extend.
        turns = selectors.prompt_turns(answer.conversation, answer)
        claimed = Message.objects.filter(
            pk=answer.pk, status__in=selectors.CONTINUABLE_STATUSES
        ).update(
            status=Message.Status.PENDING, finish_reason="", error_code="", error_text="",
            updated_at=timezone.now(),
        )
        if not claimed:  # another tab continued it first
            raise ChatError("bad_request", "That answer is already being continued.")
        answer.conversation.save(update_fields=["updated_at"])
    request = GenerationRequest(
        id=f"message-{answer.pk}",
        messages=turns,
        adapter=adapter_ref(adapter) if adapter else None,
        params=sampling,
        continue_final_message=True,
    )
    return Exchange(answer.conversation, answer.parent, answer, request)


def _choose_adapter(user, conversation: Conversation, adapter_slug: str | None):
    """None keeps the conversation's adapter, "" picks the base; the choice is remembered."""
    if adapter_slug is None:
        adapter_slug = conversation.adapter.slug if conversation.adapter else ""
    adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
    conversation.adapter = adapter
    conversation.save(update_fields=["adapter", "updated_at"])
    return adapter


def _pending_answer(user_message: Message, adapter: Adapter | None) -> Message:
    return Message.objects.create(
        conversation=user_message.conversation,
        parent=user_message,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        adapter=adapter,
    )


def _exchange(user_message: Message, answer: Message, adapter, sampling) -> Exchange:
    conversation = user_message.conversation
    request = GenerationRequest(
        id=f"message-{answer.pk}",
        messages=selectors.prompt_turns(conversation, user_message),
        adapter=adapter_ref(adapter) if adapter else None,
        params=sampling,
    )
    return Exchange(conversation, user_message, answer, request)


def generation_checkpoint(*, message_id: int, content: str) -> None:
    """Save the text so far of a live generation (a no-op once it has ended)."""
    Message.objects.filter(pk=message_id, status__in=Message.LIVE_STATUSES).update(
        content=content, status=Message.Status.STREAMING, updated_at=timezone.now()
    )


def generation_finish(
    *, message_id: int, content: str, finished: Finished, status: str,
    error_code: str = "", error_text: str = "",
) -> None:
    """Save the final state of a generation. Only the first end counts."""
    Message.objects.filter(pk=message_id, status__in=Message.LIVE_STATUSES).update(
        content=content,
        status=status,
        finish_reason=public_reason(finished.reason, status),
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        ttft_ms=finished.ttft_ms,
        total_ms=finished.total_ms,
        error_code=error_code,
        error_text=error_text,
        updated_at=timezone.now(),
    )


def generations_interrupt_orphans() -> int:
    """Mark answers left live by a web process that died as interrupted, text kept."""
    return Message.objects.filter(status__in=Message.LIVE_STATUSES).update(
        status=Message.Status.INTERRUPTED,
        finish_reason="interrupted",
        updated_at=timezone.now(),
    )


def status_for(finished: Finished, cancel_cause: str | None) -> str:
    if finished.reason == "error":
        return Message.Status.ERROR
    if finished.reason == "cancelled":
        return cancel_cause or Message.Status.INTERRUPTED
    return Message.Status.COMPLETE


def public_reason(reason: str, status: str) -> str:
    """The end reason clients see: a cancel says whether it was a stop or a lost client."""
    if reason == "cancelled" and status == Message.Status.INTERRUPTED:
        return "interrupted"
    return reason


def _checked_content(content: str) -> str:
    if not content.strip():
        raise ChatError("invalid_content", "Write a message before sending.")
    if len(content) > settings.MAX_PROMPT_CHARS:
        raise ChatError(
            "invalid_content",
            f"That message is {len(content)} characters long; the limit is "
            f"{settings.MAX_PROMPT_CHARS}.",
        )
    return content


def _sampling(params: GenerationParams) -> SamplingParams:
    max_tokens = params.max_tokens or settings.DEFAULT_MAX_NEW_TOKENS
    if max_tokens > settings.MAX_NEW_TOKENS:
        raise ChatError(
            "bad_request", f"max_tokens can be at most {settings.MAX_NEW_TOKENS}."
        )
    defaults = SamplingParams()
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=defaults.temperature if params.temperature is None else params.temperature,
        top_p=defaults.top_p if params.top_p is None else params.top_p,
        seed=params.seed,
        stop=tuple(params.stop or ()),
    )


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"

