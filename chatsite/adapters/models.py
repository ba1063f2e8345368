from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Adapter(models.Model):
    """A LoRA fine-tune of the deployment's base model, as users name it (by slug)."""

    class Visibility(models.TextChoices):
        PUBLIC = "public", "Everyone signed in"
        STAFF = "staff", "Staff only"
        GROUPS = "groups", "Chosen groups"

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Shown under the adapter picker.")
    base_model = models.CharField(
        max_length=500, blank=True, help_text="The base model the adapter was trained on."
    )
    location = models.CharField(
        max_length=1000,
        help_text="Directory of adapter_config.json and adapter_model.safetensors, "
        "absolute or relative to ADAPTERS_DIR.",
    )
    source = models.CharField(
        max_length=500, blank=True, help_text="Where it came from: upload, server path or hub id."
    )
    enabled = models.BooleanField(default=True)
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    groups = models.ManyToManyField(
        Group, blank=True, related_name="adapters",
        help_text="With visibility “Chosen groups”: the groups whose members may use it.",
    )

    # Defaults for conversations that use the adapter; a user's own choice wins.
    system_prompt = models.TextField(
        blank=True, help_text="Used when the conversation has no system prompt of its own."
    )
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2)],
        help_text="Used when the request names none. Empty: the server's default.",
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Longest answer when the request names none (at most MAX_NEW_TOKENS).",
    )

    # The last validation that passed (validation runs before an adapter can be enabled).
    validated_at = models.DateTimeField(null=True, blank=True)
    validation_warnings = models.TextField(blank=True)
    rank = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
