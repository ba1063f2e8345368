"""Reads of the adapter registry, always from the point of view of one user."""

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Avg, Count, Max, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from chatsite.adapters.models import Adapter
from chatsite.errors import ChatError
from inference.types import AdapterRef, ChatTurn


@dataclass(frozen=True)
class AdapterDefaults:
    """What an adapter brings to a conversation when the user does not say otherwise."""

    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None

    def with_system_prompt(self, turns: tuple[ChatTurn, ...]) -> tuple[ChatTurn, ...]:
        """The adapter's system prompt first, unless the conversation has its own."""
        if not self.system_prompt or (turns and turns[0].role == "system"):
            return turns
        return (ChatTurn(role="system", content=self.system_prompt), *turns)


@dataclass(frozen=True)
class AdapterUsage:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    last_used: object  # datetime or None
    mean_ttft_ms: float | None
    tokens_per_s: float | None


def adapters_usable_by(user):
    """Enabled adapters this user may see and use: public, staff-only for staff, their groups."""
    enabled = Adapter.objects.filter(enabled=True)
    if user is None or not user.is_authenticated:
        return enabled.none()
    if user.is_superuser:
        return enabled
    allowed = Q(visibility=Adapter.Visibility.PUBLIC)
    if user.is_staff:
        allowed |= Q(visibility=Adapter.Visibility.STAFF)
    in_groups = Adapter.objects.filter(
        visibility=Adapter.Visibility.GROUPS, groups__user=user
    ).values("pk")
    return enabled.filter(allowed | Q(pk__in=in_groups))


def adapter_for_user(user, slug: str) -> Adapter:
    """The adapter `slug` if `user` may use it; otherwise the same error as an unknown one."""
    adapter = adapters_usable_by(user).filter(slug=slug).first()
    if adapter is None:
        raise ChatError("unknown_adapter", f"There is no adapter called “{slug}”.")
    return adapter


def adapter_defaults(adapter: Adapter | None) -> AdapterDefaults:
    if adapter is None:
        return AdapterDefaults()
    max_tokens = adapter.max_tokens
    if max_tokens is not None:  # MAX_NEW_TOKENS may have been lowered since it was set
        max_tokens = min(max_tokens, settings.MAX_NEW_TOKENS)
    return AdapterDefaults(adapter.system_prompt, adapter.temperature, max_tokens)


def adapter_path(adapter: Adapter) -> Path:
    path = Path(adapter.location)
    if not path.is_absolute():
        path = Path(settings.ADAPTERS_DIR) / path
    return path


def adapter_ref(adapter: Adapter) -> AdapterRef:
    return AdapterRef(name=adapter.slug, path=str(adapter_path(adapter)))


def adapter_usage(adapter: Adapter) -> AdapterUsage:
    """Totals over the answers generated with this adapter (chat Message rows)."""
    from chatsite.chat.models import Message  # chat depends on adapters, not the other way

    rows = Message.objects.filter(adapter=adapter, role=Message.Role.ASSISTANT)
    totals = rows.aggregate(
        requests=Count("pk"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        errors=Count("pk", filter=Q(status=Message.Status.ERROR)),
        last_used=Max("created_at"),
        mean_ttft_ms=Avg("ttft_ms"),
    )
    timed = rows.filter(total_ms__gt=0, completion_tokens__gt=0).aggregate(
        tokens=Sum("completion_tokens"), ms=Sum("total_ms")
    )
    return AdapterUsage(
        requests=totals["requests"],
        prompt_tokens=totals["prompt_tokens"] or 0,
        completion_tokens=totals["completion_tokens"] or 0,
        errors=totals["errors"],
        last_used=totals["last_used"],
        mean_ttft_ms=totals["mean_ttft_ms"],
        tokens_per_s=timed["tokens"] * 1000 / timed["ms"] if timed["ms"] else None,
    )


@dataclass(frozen=True)
class UsageDay:
    day: date
    requests: int
    tokens_per_s: float | None  # None: no timed answer that day


def adapter_usage_by_day(adapter: Adapter, days: int = 14) -> list[UsageDay]:
    """One entry per day of the last `days` (today last, in the current time zone), empty days
    included, so a chart of them has an even time axis."""
    from chatsite.chat.models import Message

    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows = (
        Message.objects.filter(adapter=adapter, role=Message.Role.ASSISTANT)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .filter(day__gte=first)
        .values("day")
        .annotate(
            requests=Count("pk"),
            tokens=Sum("completion_tokens", filter=Q(total_ms__gt=0, completion_tokens__gt=0)),
            ms=Sum("total_ms", filter=Q(total_ms__gt=0, completion_tokens__gt=0)),
        )
    )
    by_day = {row["day"]: row for row in rows}
    entries = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {"requests": 0, "tokens": None, "ms": None})
        rate = row["tokens"] * 1000 / row["ms"] if row["ms"] else None
        entries.append(UsageDay(day=day, requests=row["requests"], tokens_per_s=rate))
    return entries


def base_model_id() -> str:
    """The name clients use for the plain base model (OpenAI `model`, LoRAX `model_id`): a
    hub id as it is, a local directory by its name."""
    configured = str(settings.BASE_MODEL).rstrip("/")
    path = Path(configured)
    return path.name if path.is_absolute() or path.exists() else configured
