"""Writes of conversations and messages. The only place that changes their rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, TextField, Value, When
from django.utils import timezone

from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import (
    AdapterDefaults,
    adapter_defaults,
    adapter_for_user,
    adapter_ref,
)
from chatsite.chat.conversations import limits, selectors
from chatsite.chat.models import Conversation, Message, ServerProcess
from chatsite.chat.streams.protocol import GenerationParams
from chatsite.chat.transports.request_params import grammar_for
from chatsite.chat.workers import processes
from chatsite.errors import ChatError, field_error
from inference.types import Finished, GenerationRequest, SamplingParams

TITLE_CHARS = 60
TITLE_MAX_CHARS = 200

# What the engine is asked to do with an answer's rows (the worker rebuilds requests by kind).
CHAT, RAW, CONTINUE = "chat", "raw", "continue"


@dataclass(frozen=True)
class Exchange:
    """A user's message, the assistant message that will answer it, and the engine request."""

    conversation: Conversation
    user_message: Message
    assistant_message: Message
    request: GenerationRequest
    kind: str = CHAT


def conversation_create(
    *, owner, adapter: Adapter | None, title: str = "", system_prompt: str = "",
    source: str = Conversation.Source.CHAT,
):
    return Conversation.objects.create(
        source=source,
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
    # Not "updated_at": a rename is no new activity, and the sidebar keeps its order.
    conversation.save(update_fields=["title"])
    return conversation


def conversation_delete(*, user, conversation_id: int) -> list[int]:
    """Delete a conversation; the ids of its answers that were still being generated, which
    the caller must stop (or they would generate on, unseen and uncounted by the live cap)."""
    with transaction.atomic():
        conversation = selectors.conversation_of(user, conversation_id)
        live = list(
            conversation.messages.filter(status__in=Message.LIVE_STATUSES).values_list(
                "pk", flat=True
            )
        )
        conversation.delete()
    return live


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


RAW_SOURCE = Conversation.Source.LORAX  # a raw prompt without a `source` is LoRAX's `inputs`


def exchange_start(
    *, user, conversation_id: int | None, content: str, adapter_slug: str | None,
    params: GenerationParams, parent_id: int | None = None, parent_given: bool = False,
    raw_prompt: bool = False, source: str = "",
) -> Exchange:
    """Record a user message and a pending answer, and describe the generation to run.

    The user message follows `parent_id` when `parent_given` (None: a new first message, as
    when the first message is edited), else the newest message of the conversation. With
    `raw_prompt` the content goes to the model as it is, without the chat template (LoRAX's
    `inputs`); it is still recorded as the user's message. `source` labels a new conversation
    (by default LoRAX for a raw prompt, else the chat page)."""
    content = _checked_content(content)
    if conversation_id is None:
        if parent_given and parent_id is not None:
            raise ChatError("bad_request", "A new conversation has no message to follow.")
        # Read before the transaction, and no branch to look up: on SQLite a transaction holds
        # the database's one write lock, which every answer being started waits for.
        adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
        sampling = _sampling(params, adapter_defaults(adapter))
        with transaction.atomic():
            limits.live_answer_slot(user)
            conversation = conversation_create(
                owner=user, adapter=adapter, title=title_from(content),
                source=source or (RAW_SOURCE if raw_prompt else Conversation.Source.CHAT),
            )
            answer = _record_turn(conversation, None, content, adapter)
        return _exchange(answer, sampling, RAW if raw_prompt else CHAT, history=[])
    with transaction.atomic():
        limits.live_answer_slot(user)
        conversation = selectors.conversation_of(user, conversation_id)
        adapter = _choose_adapter(user, conversation, adapter_slug)
        changed = ["adapter", "updated_at"]
        if not conversation.title:
            conversation.title = title_from(content)
            changed.append("title")
        conversation.save(update_fields=changed)
        sampling = _sampling(params, adapter_defaults(adapter))  # a refusal rolls back
        # One read of the conversation's messages finds the parent and, later, the prompt.
        history = selectors.history_of(conversation)
        if parent_given:
            parent = selectors.message_among(history, parent_id) if parent_id else None
        else:
            parent = selectors.newest(history)
        answer = _record_turn(conversation, parent, content, adapter)
    return _exchange(answer, sampling, RAW if raw_prompt else CHAT, history=history)


def _record_turn(conversation, parent: Message | None, content: str, adapter) -> Message:
    """The user's message after `parent`, and the pending answer to it."""
    user_message = Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.USER, content=content
    )
    return _pending_answer(user_message, adapter)


def exchange_regenerate(
    *, user, message_id: int, adapter_slug: str | None, params: GenerationParams
) -> Exchange:
    """A new answer to the user message that assistant `message_id` answers (a sibling)."""
    with transaction.atomic():
        limits.live_answer_slot(user)
        previous = selectors.message_of(user, message_id, role=Message.Role.ASSISTANT)
        adapter = _choose_adapter(user, previous.conversation, adapter_slug)
        previous.conversation.save(update_fields=["adapter", "updated_at"])
        sampling = _sampling(params, adapter_defaults(adapter))
        answer = _pending_answer(previous.parent, adapter)
    return _exchange(answer, sampling, CHAT)


def exchange_compare(
    *, user, conversation_id: int | None, content: str, adapter_slugs: list[str],
    params: GenerationParams,
) -> list[Exchange]:
    """One user message and one answer per adapter ("" = the base), siblings in the branch
    tree, in the order given. All or nothing: an adapter the user may not use refuses it all."""
    if len(set(adapter_slugs)) != len(adapter_slugs):
        raise ChatError("bad_request", "Name each adapter to compare once.")
    for slug in adapter_slugs:
        if slug:
            adapter_for_user(user, slug)
    with transaction.atomic():
        first = exchange_start(
            user=user, conversation_id=conversation_id, content=content,
            adapter_slug=adapter_slugs[0], params=params,
        )
        others = [
            exchange_regenerate(
                user=user, message_id=first.assistant_message.pk, adapter_slug=slug, params=params
            )
            for slug in adapter_slugs[1:]
        ]
    return [first, *others]


def exchange_continue(*, user, message_id: int, params: GenerationParams) -> Exchange:
    """Extend a stopped, interrupted or length-cut answer in place, with its own adapter."""
    with transaction.atomic():
        limits.live_answer_slot(user)
        answer = selectors.message_of(user, message_id, role=Message.Role.ASSISTANT)
        if not selectors.can_continue(answer):
            raise ChatError(
                "bad_request",
                "Only a stopped, interrupted or length-cut answer with text can be continued.",
            )
        adapter = answer.adapter
        if adapter is not None:
            adapter_for_user(user, adapter.slug)  # still allowed to use it
        sampling = _sampling(params, adapter_defaults(adapter))
        claimed = Message.objects.filter(
            pk=answer.pk, status__in=selectors.CONTINUABLE_STATUSES
        ).update(
            status=Message.Status.PENDING, finish_reason="", error_code="", error_text="",
            worker=processes.owner_of_new_answers(), updated_at=timezone.now(),
        )
        if not claimed:  # another tab continued it first
            raise ChatError("bad_request", "That answer is already being continued.")
        answer.conversation.save(update_fields=["updated_at"])
    return _exchange(answer, sampling, CONTINUE)


def _choose_adapter(user, conversation: Conversation, adapter_slug: str | None):
    """None keeps the conversation's adapter, "" picks the base; the caller saves the choice
    on the conversation (with its other changes: one statement)."""
    if adapter_slug is None:
        adapter_slug = conversation.adapter.slug if conversation.adapter else ""
    adapter = adapter_for_user(user, adapter_slug) if adapter_slug else None
    conversation.adapter = adapter
    return adapter


def _pending_answer(user_message: Message, adapter: Adapter | None) -> Message:
    return Message.objects.create(
        conversation=user_message.conversation,
        parent=user_message,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        adapter=adapter,
        worker=processes.owner_of_new_answers(),
    )


def _exchange(
    answer: Message, sampling: SamplingParams, kind: str, history: list[Message] | None = None
) -> Exchange:
    """`history`: the conversation's messages before this turn, when the caller read them."""
    request = _request_for(answer, sampling, kind, history)
    return Exchange(answer.conversation, answer.parent, answer, request, kind)


def generation_request(*, message_id: int, params: dict, kind: str) -> GenerationRequest:
    """The engine request for a pending answer, rebuilt from its rows (the worker's view)."""
    answer = Message.objects.select_related("conversation", "parent", "adapter").get(pk=message_id)
    # The task's JSON turned tuples into lists.
    sampling = SamplingParams(
        **{
            **params,
            "stop": tuple(params["stop"]),
            "logit_bias": tuple(tuple(pair) for pair in params.get("logit_bias", ())),
        }
    )
    return _request_for(answer, sampling, kind)


def _request_for(
    answer: Message, sampling: SamplingParams, kind: str, history: list[Message] | None = None
) -> GenerationRequest:
    adapter = adapter_ref(answer.adapter) if answer.adapter else None
    if kind == RAW:
        # An answer that already has text (one that failed over) goes on after it.
        return GenerationRequest(
            id=f"message-{answer.pk}", prompt=answer.parent.content + answer.content,
            adapter=adapter,
            params=sampling,
        )
    # A continuation extends the answer itself, as the last, unfinished turn.
    last = answer if kind == CONTINUE else answer.parent
    messages = None if history is None else [*history, answer.parent, answer]
    turns = selectors.prompt_turns(answer.conversation, last, messages)
    return GenerationRequest(
        id=f"message-{answer.pk}",
        messages=adapter_defaults(answer.adapter).with_system_prompt(turns),
        adapter=adapter,
        params=sampling,
        continue_final_message=kind == CONTINUE,
    )


def generation_fail_over(*, message_id: int, lost_worker: str, content: str) -> bool:
    """Hand a streaming answer whose worker died back to the queue, with the text its log
    holds: pending again and nobody's, so the lost worker can save nothing more (its writes
    name it) and the next worker can claim it. False when it ended or moved meanwhile."""
    return bool(
        Message.objects.filter(
            pk=message_id, status=Message.Status.STREAMING, worker=lost_worker
        ).update(
            status=Message.Status.PENDING, worker="", content=content, updated_at=timezone.now()
        )
    )


def generation_claim(*, message_id: int, worker: str) -> bool:
    """Take a pending answer for one worker. False when it was claimed or ended already, so a
    redelivered task never generates the same answer twice."""
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.PENDING).update(
            status=Message.Status.STREAMING, worker=worker, updated_at=timezone.now()
        )
    )


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
            owner=user, adapter=None, title=title_from(content), system_prompt=system,
            source=Conversation.Source.OPENAI,
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


def transcript_exchanges_start(
    *, user, turns: list[tuple[str, str]], adapter_slug: str | None, params: GenerationParams,
    n: int,
) -> list[Exchange]:
    """`transcript_exchange_start` with `n` answers to the last turn (OpenAI's `n`), siblings
    in the branch tree. With a seed, answer i samples with seed + i, so they differ as
    OpenAI's choices do. All or nothing."""
    with transaction.atomic():
        first = transcript_exchange_start(
            user=user, turns=turns, adapter_slug=adapter_slug, params=params
        )
        others = [
            exchange_regenerate(
                user=user, message_id=first.assistant_message.pk,
                adapter_slug=adapter_slug or "", params=_nth_seed(params, index),
            )
            for index in range(1, n)
        ]
    return [first, *others]


def _nth_seed(params: GenerationParams, index: int) -> GenerationParams:
    if params.seed is None:
        return params
    return params.model_copy(update={"seed": (params.seed + index) % 2**63})


def generation_earlier_text(*, message_id: int) -> str:
    """The text an answer already has before its generation starts (a continuation's)."""
    return Message.objects.values_list("content", flat=True).get(pk=message_id)


# Answers per checkpoint statement (two parameters each; SQLite allows 32766 in all).
CHECKPOINT_ROWS = 500


def generation_checkpoint(*, message_id: int, content: str, worker: str | None = None) -> None:
    """Save the text so far of a live generation (a no-op once it has ended). With `worker`,
    only while the answer is still that worker's (after a failover it is not)."""
    if worker is None:
        generation_checkpoints({message_id: content})
    else:
        Message.objects.filter(
            pk=message_id, status__in=Message.LIVE_STATUSES, worker=worker
        ).update(content=content, status=Message.Status.STREAMING, updated_at=timezone.now())


def generation_checkpoints(texts: dict[int, str], *, alive: str | None = None) -> None:
    """`generation_checkpoint` for many answers (message id: text so far): one UPDATE for up
    to `CHECKPOINT_ROWS` of them. SQLite has one writer at a time, and with a statement per
    answer a tick at 200 live answers held the write lock 76 ms (p50) for every request that
    starts an answer to wait on; one statement holds it 23 ms (docs/BENCHMARKS.md). `alive`:
    the process whose heartbeat to write in the same transaction."""
    rows = list(texts.items())
    with transaction.atomic():
        if alive:
            process_beat(name=alive)
        for start in range(0, len(rows), CHECKPOINT_ROWS):
            chunk = rows[start:start + CHECKPOINT_ROWS]
            Message.objects.filter(
                pk__in=[pk for pk, _ in chunk], status__in=Message.LIVE_STATUSES
            ).update(
                content=Case(
                    *(When(pk=pk, then=Value(text)) for pk, text in chunk),
                    output_field=TextField(),
                ),
                status=Message.Status.STREAMING,
                updated_at=timezone.now(),
            )


def generation_finish(
    *, message_id: int, content: str, finished: Finished, status: str, finish_reason: str,
    error_code: str = "", error_text: str = "", end_event_id: int | None = None,
    worker: str | None = None,
) -> None:
    """Save the final state of a generation (its status and end reason as the lifecycle
    decided them, streams/lifecycle.py). Only the first end counts; with `worker`, only while
    the answer is still that worker's."""
    mine = {} if worker is None else {"worker": worker}
    Message.objects.filter(pk=message_id, status__in=Message.LIVE_STATUSES, **mine).update(
        end_event_id=end_event_id,
        content=content,
        status=status,
        finish_reason=finish_reason,
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        ttft_ms=finished.ttft_ms,
        total_ms=finished.total_ms,
        error_code=error_code,
        error_text=error_text,
        updated_at=timezone.now(),
    )


def process_beat(*, name: str) -> None:
    """This process is alive (it owns live answers); only the process itself writes its row."""
    now = timezone.now()
    if not ServerProcess.objects.filter(name=name).update(beat_at=now):
        ServerProcess.objects.create(name=name, beat_at=now)


def generations_interrupt_orphans(*, lost_after_s: float) -> int:
    """Mark as interrupted, text kept (the last checkpoint), the live answers whose owner is
    provably gone: it has not beaten for `lost_after_s` (or never did: an answer from before
    owners were recorded) and nothing has saved the answer for as long either."""
    cutoff = timezone.now() - timedelta(seconds=lost_after_s)
    alive = ServerProcess.objects.filter(beat_at__gte=cutoff).values("name")
    count = (
        Message.objects.filter(status__in=Message.LIVE_STATUSES, updated_at__lt=cutoff)
        .exclude(worker__in=alive)
        .update(
            status=Message.Status.INTERRUPTED,
            finish_reason="interrupted",
            updated_at=timezone.now(),
        )
    )
    ServerProcess.objects.filter(beat_at__lt=cutoff).delete()  # their answers are ended now
    return count


def generation_worker_lost(
    *, message_id: int, message: str, statuses: tuple[str, ...] = Message.LIVE_STATUSES,
    end_event_id: int | None = None,
    content: str | None = None, worker: str | None = None,
) -> bool:
    """End an answer whose worker went silent, with `content` (the text its clients were
    shown) or else its last checkpoint; only while its status is one of `statuses` (and, with
    `worker`, while it is still that worker's)."""
    text = {} if content is None else {"content": content}
    mine = {} if worker is None else {"worker": worker}
    return bool(
        Message.objects.filter(pk=message_id, status__in=statuses, **mine).update(
            end_event_id=end_event_id,
            status=Message.Status.ERROR,
            finish_reason="error",
            error_code="worker_lost",
            error_text=message,
            updated_at=timezone.now(),
            **text,
        )
    )


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


def _sampling(params: GenerationParams, adapter: AdapterDefaults) -> SamplingParams:
    """The request's own values, else the adapter's defaults, else the server's."""
    max_tokens = params.max_tokens or adapter.max_tokens or settings.DEFAULT_MAX_NEW_TOKENS
    if max_tokens > settings.MAX_NEW_TOKENS:
        raise ChatError(
            "bad_request",
            f"max_tokens can be at most {settings.MAX_NEW_TOKENS}.",
            param="max_tokens",
        )
    defaults = SamplingParams()
    temperature = params.temperature
    if temperature is None:
        temperature = defaults.temperature if adapter.temperature is None else adapter.temperature
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_p=defaults.top_p if params.top_p is None else params.top_p,
        seed=params.seed,
        stop=tuple(params.stop or ()),
        ignore_eos=params.ignore_eos,
        top_k=params.top_k or 0,
        presence_penalty=params.presence_penalty or 0.0,
        frequency_penalty=params.frequency_penalty or 0.0,
        repetition_penalty=1.0 if params.repetition_penalty is None else params.repetition_penalty,
        logit_bias=tuple(sorted((int(k), v) for k, v in (params.logit_bias or {}).items())),
        grammar=_grammar(params),
        # Only the OpenAI and LoRAX APIs ask (request_params.ApiParams).
        logprobs=getattr(params, "logprobs", False),
        top_logprobs=getattr(params, "top_logprobs", 0),
        prompt_logprobs=getattr(params, "prompt_logprobs", False),
    )


def _grammar(params: GenerationParams) -> str | None:
    grammar = grammar_for(params.response_format)
    if grammar and params.ignore_eos:
        raise field_error(
            "ignore_eos",
            "cannot be combined with a JSON response_format or a forced tool call; the answer "
            "ends where the JSON does.",
        )
    return grammar


def title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"

