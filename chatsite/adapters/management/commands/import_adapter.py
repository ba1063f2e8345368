from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from chatsite.adapters.models import Adapter
from chatsite.adapters.services import adapter_register, incoming_from_dir
from inference.errors import AdapterError


class Command(BaseCommand):
    help = (
        "Check a LoRA adapter directory (adapter_config.json + adapter_model.safetensors), copy "
        "it to ADAPTERS_DIR/<slug> and register it: enabled and public unless told otherwise. "
        "Exits non-zero, saying why, when the adapter is rejected."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", help="Display name (default: the slug).")
        parser.add_argument("--description", default="")
        parser.add_argument("--disabled", action="store_true", help="Register it disabled.")
        parser.add_argument("--staff-only", action="store_true", help="Only staff may use it.")

    def handle(self, *args, directory, slug, name, description, disabled, staff_only, **options):
        adapter = Adapter(
            slug=slug,
            name=name or slug,
            description=description,
            enabled=not disabled,
            visibility=Adapter.Visibility.STAFF if staff_only else Adapter.Visibility.PUBLIC,
        )
        self._check_slug(adapter)
        try:
            incoming = incoming_from_dir(path=directory)
            adapter = adapter_register(incoming=incoming, adapter=adapter)
        except AdapterError as error:
            raise CommandError(f"Adapter rejected: {error.message}") from None
        for warning in incoming.report.warnings:
            self.stderr.write(f"Warning: {warning}")
        state = "enabled" if adapter.enabled else "disabled"
        self.stdout.write(
            f"Registered {adapter.slug} ({state}, {adapter.get_visibility_display().lower()}, "
            f"rank {adapter.rank}) at {adapter.location}."
        )

    def _check_slug(self, adapter: Adapter) -> None:
        try:
            adapter.clean_fields(exclude=["location", "name"])
        except ValidationError as error:
            problem = " ".join(error.messages)
            raise CommandError(f"Adapter rejected: --slug {adapter.slug!r}: {problem}") from None
