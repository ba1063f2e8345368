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


def exchange_start(
    *, user, conversation_id: int | None, content: str, adapter_slug: str | None,
    params: GenerationParams, raw_prompt: bool = False,
) -> Exchange:
    """Record a user message and a pending answer, and describe the generation to run.

    With `raw_prompt` the content is sent to the model as it is, without the chat template
    (LoRAX's `inputs`); it is still recorded as the user's message."""
    content = _checked_content(content)
    sampling = _sampling(params)
    with transaction.atomic():
        if conversation_id is None:
            adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
            conversation = conversation_create(
                owner=user, adapter=adapter, title=_title_from(content)
            )
        else:
            conversation = selectors.conversation_of(user, conversation_id)
            if adapter_slug is None:  # the conversation's own choice; "" picks the base
                adapter_slug = conversation.adapter.slug if conversation.adapter else ""
            adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
            conversation.adapter = adapter
            conversation.save(update_fields=["adapter", "updated_at"])
        user_message = Message.objects.create(
            conversation=conversation,
            parent=selectors.branch_tip(conversation),
            role=Message.Role.USER,
            content=content,
        )
        answer = Message.objects.create(
            conversation=conversation,
            parent=user_message,
            role=Message.Role.ASSISTANT,
            status=Message.Status.PENDING,
            adapter=adapter,
        )
    request = GenerationRequest(
        id=f"message-{answer.pk}",
        messages=() if raw_prompt else selectors.prompt_turns(conversation, user_message),
        prompt=content if raw_prompt else None,
        adapter=adapter_ref(adapter) if adapter else None,
        params=sampling,
    )
    return Exchange(conversation, user_message, answer, request)


def conversation_rename(*, user, conversation_id: int, title: str) -> Conversation:
    conversation = selectors.conversation_of(user, conversation_id)
    conversation.title = title[:200]
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, user, conversation_id: int) -> None:
    """Delete a conversation and its messages; a live answer in it just stops being saved."""
    selectors.conversation_of(user, conversation_id).delete()


def transcript_exchange_start(
    *, user, turns: list[tuple[str, str]], adapter_slug: str | None, params: GenerationParams,
) -> Exchange:
    """A new conversation holding a whole transcript (OpenAI's `messages`): system turns
    become its system prompt, earlier turns its history, the last user turn the question.
    All or nothing: a refusal leaves no rows behind."""
    *history, (role, content) = turns
    if role != "user":
        raise ChatError("bad_request", "The last message must be the user's.")
    system = "\n\n".join(text for kind, text in history if kind == "system")
    with transaction.atomic():
        conversation = conversation_create(
            owner=user, adapter=None, title=_title_from(content), system_prompt=system
        )
        parent = None
        for kind, text in history:
            if kind != "system":
                parent = Message.objects.create(
                    conversation=conversation, parent=parent, role=kind, content=text
                )
        return exchange_start(
            user=user, conversation_id=conversation.pk, content=content,
            adapter_slug=adapter_slug or "", params=params,
        )


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

