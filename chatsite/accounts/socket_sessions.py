"""Open sockets end with the session that opened them (docs/ARCHITECTURE.md, "Security").

The socket's user is read once, at the handshake; without this a socket opened before a logout,
a password change or a deactivation would go on reading and writing as that user. Each socket
joins two channel-layer groups, one for its session and one for its user (the layer is Redis in
celery mode, so this works across web processes; in memory in local mode):

- logging out ends the sockets of that session at once;
- any other change to the user (a new password, `is_active` off, a deleted row) asks each of the
  user's sockets to check its session again, by Django's own rule (`auth.get_user`: the session
  must exist, name an active user and carry the current password's hash); a socket whose
  session no longer signs anyone in closes.

Closed with code `SESSION_ENDED` (4401, as for a handshake without a session: the page shows it
is signed out) and a reason in words.
"""

from __future__ import annotations

import hashlib
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.db import transaction

SESSION_ENDED = 4401
ENDED_REASON = "Your session ended (signed out, password changed or account closed); sign in again."
END = "session.end"
RECHECK = "session.recheck"


def session_group(session_key: str) -> str:
    # A digest: group names end up in Redis keys, and a session key is a credential.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def groups_of(*, session_key: str | None, user_id: int) -> list[str]:
    return [user_group(user_id)] + ([session_group(session_key)] if session_key else [])


def session_signs_in(*, session_key: str | None, user_id: int) -> bool:
    """Whether the session still signs in this user, as an HTTP request with it would find."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(_SessionOnly(store))
    return user.is_authenticated and user.pk == user_id


class _SessionOnly:
    """All of a request that `auth.get_user` reads."""

    def __init__(self, session):
        self.session = session


# --- notices, sent once the change is committed ---------------------------------------------
def sockets_end_for_session(session_key: str | None) -> None:
    if session_key:
        _send_on_commit(session_group(session_key), END)


def sockets_recheck_for_user(user_id: int) -> None:
    _send_on_commit(user_group(user_id), RECHECK)


def _send_on_commit(group: str, kind: str) -> None:
    layer = get_channel_layer()
    if layer is not None:
        transaction.on_commit(lambda: async_to_sync(layer.group_send)(group, {"type": kind}))


# --- where sessions end -----------------------------------------------------------------------
# Signals, not calls in the views: a password or `is_active` changes in many places (the
# password-change and reset views, the admin, `manage.py changepassword`, a shell), and the
# user row's save is the one thing they share. The receivers only send a notice; each socket
# decides by the session rule above.
def _on_logout(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    sockets_end_for_session(session.session_key if session is not None else None)


def _on_user_saved(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # each login writes it; nothing a session depends on
    sockets_recheck_for_user(instance.pk)


def _on_user_deleted(sender, instance, **kwargs) -> None:
    sockets_recheck_for_user(instance.pk)


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_delete, post_save

    user_model = get_user_model()
    user_logged_out.connect(_on_logout, dispatch_uid="socket_sessions.logout")
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="socket_sessions.saved")
    post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="socket_sessions.deleted")
