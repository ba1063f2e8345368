from django.conf import settings
from django.db import models


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # Null means the plain base model.
    adapter = models.ForeignKey(
        "adapters.Adapter", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    system_prompt = models.TextField(blank=True)

    class Source(models.TextChoices):
        CHAT = "chat"  # the chat page, or the native API
        OPENAI = "openai"  # one per /v1/chat/completions call
        LORAX = "lorax"  # one per /lorax generation

    # Each OpenAI or LoRAX call becomes a conversation; the sidebar keeps those apart.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.CHAT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        INTERRUPTED = "interrupted"
        ERROR = "error"

    LIVE_STATUSES = (Status.PENDING, Status.STREAMING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # The message this one answers or follows; siblings under one parent are branches.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # Kept even if the adapter is later disabled; an adapter with history cannot be deleted.
    adapter = models.ForeignKey(
        "adapters.Adapter", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    finish_reason = models.CharField(max_length=16, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    # The process generating this answer: the Celery worker (celery mode), or the web process
    # (local and lorax modes, `ServerProcess.name`), so that only a provably gone owner's
    # answers are ever ended for it (the reaper; `generations_interrupt_orphans`).
    worker = models.CharField(max_length=200, blank=True)
    # The SSE id its live log gave the answer's `inference.end`, so that a replay of the saved
    # answer keeps the live numbering (null: ended without it, as by a web process's restart).
    end_event_id = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            # The few live answers, for the orphan sweep and the reaper, on a table of many.
            models.Index(
                fields=["updated_at"], name="chat_message_live",
                condition=models.Q(status__in=["pending", "streaming"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk} ({self.status})"


class ServerProcess(models.Model):
    """A web process that generates answers itself (local and lorax modes), and when it last
    said it was alive. It beats while it has live answers; a live answer whose owner has been
    silent for WORKER_LOST_AFTER_S, and that nothing has saved for as long, is an orphan."""

    name = models.CharField(max_length=200, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
