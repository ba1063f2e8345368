from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chatsite.chat"
    verbose_name = "Chat"

    def ready(self):
        from chatsite.chat.ops import checks  # noqa: F401  (registers system checks)
