"""Reads of the adapter registry, always from the point of view of one user."""

from pathlib import Path

from django.conf import settings

from chatsite.adapters.models import Adapter
from chatsite.chat.errors import ChatError
from inference.types import AdapterRef


def adapters_usable_by(user):
    return Adapter.objects.filter(enabled=True)


def adapter_for_user(user, slug: str) -> Adapter:
    """The adapter `slug` if `user` may use it; otherwise the same error as an unknown one."""
    adapter = adapters_usable_by(user).filter(slug=slug).first()
    if adapter is None:
        raise ChatError("unknown_adapter", f"There is no adapter called “{slug}”.")
    return adapter


def adapter_ref(adapter: Adapter) -> AdapterRef:
    path = Path(adapter.location)
    if not path.is_absolute():
        path = Path(settings.ADAPTERS_DIR) / path
    return AdapterRef(name=adapter.slug, path=str(path))


def base_model_id() -> str:
    """The name clients use for the plain base model (OpenAI `model`, LoRAX `model_id`): a
    hub id as it is, a local directory by its name."""
    configured = str(settings.BASE_MODEL).rstrip("/")
    path = Path(configured)
    return path.name if path.is_absolute() or path.exists() else configured
