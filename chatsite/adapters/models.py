from django.db import models


class Adapter(models.Model):
    """A LoRA fine-tune of the deployment's base model, as users name it (by slug)."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    base_model = models.CharField(
        max_length=500, blank=True, help_text="The base model the adapter was trained on."
    )
    location = models.CharField(
        max_length=1000,
        help_text="Directory of adapter_config.json and adapter_model.safetensors, "
        "absolute or relative to ADAPTERS_DIR.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
