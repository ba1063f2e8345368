from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "chatsite.accounts"

    def ready(self):
        from chatsite.accounts.socket_sessions import connect_signals

        connect_signals()
