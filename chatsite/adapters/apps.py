from django.apps import AppConfig


class AdaptersConfig(AppConfig):
    name = "chatsite.adapters"
    verbose_name = "LoRA adapters"
