from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatsite.adapters.services import demo_adapters_register
from inference.demo import MARKER_NAME, build_demo_model


class Command(BaseCommand):
    help = (
        "Write the tiny demo base model (at BASE_MODEL) and its three LoRA adapters "
        "(under ADAPTERS_DIR), and register the adapters. Deterministic and idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, seed: int, **options):
        base_dir = Path(settings.BASE_MODEL)
        if (base_dir / "config.json").exists() and not (base_dir / MARKER_NAME).exists():
            raise CommandError(
                f"BASE_MODEL={base_dir} holds a model that is not the demo model; "
                "refusing to overwrite it. Unset BASE_MODEL to use the demo."
            )
        demo = build_demo_model(base_dir, Path(settings.ADAPTERS_DIR), seed=seed)
        adapters = demo_adapters_register(demo)
        self.stdout.write(f"Demo base model: {demo.base_dir}")
        for adapter in adapters:
            self.stdout.write(f"Adapter {adapter.slug}: {adapter.name}")
