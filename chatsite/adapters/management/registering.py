"""What the shell commands that add an adapter share: the slug check, and registering a
directory with the reasons and warnings said the way a shell user reads them."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from chatsite.adapters.models import Adapter
from chatsite.adapters.services import adapter_register, incoming_from_dir
from inference.errors import AdapterError


def check_slug(adapter: Adapter) -> None:
    try:
        adapter.clean_fields(exclude=["location", "name"])
    except ValidationError as error:
        problem = " ".join(error.messages)
        raise CommandError(f"Adapter rejected: --slug {adapter.slug!r}: {problem}") from None


def register_dir(directory: Path, adapter: Adapter, stderr) -> Adapter:
    """Validate, copy and register `directory` as `adapter` (unsaved); warnings go to stderr."""
    try:
        incoming = incoming_from_dir(path=directory)
        adapter = adapter_register(incoming=incoming, adapter=adapter)
    except AdapterError as error:
        raise CommandError(f"Adapter rejected: {error.message}") from None
    for warning in incoming.report.warnings:
        stderr.write(f"Warning: {warning}")
    return adapter
