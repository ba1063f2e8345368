from pathlib import Path

from django.core.management.base import BaseCommand

from chatsite.adapters.management.registering import check_slug, register_dir
from chatsite.adapters.models import Adapter


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
        check_slug(adapter)
        adapter = register_dir(directory, adapter, self.stderr)
        state = "enabled" if adapter.enabled else "disabled"
        self.stdout.write(
            f"Registered {adapter.slug} ({state}, {adapter.get_visibility_display().lower()}, "
            f"rank {adapter.rank}) at {adapter.location}."
        )
