"""Writes to the adapter registry."""

from pathlib import Path

from django.conf import settings

from chatsite.adapters.models import Adapter
from inference.demo import DemoModel

DEMO_BASE_NAME = "patchbay-demo-base"


def demo_adapters_register(demo: DemoModel) -> list[Adapter]:
    """Register (or refresh) the demo adapters; an admin's enabled flag is left alone."""
    adapters = []
    for spec in demo.adapters:
        adapter, _ = Adapter.objects.update_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "description": spec.description,
                "base_model": DEMO_BASE_NAME,
                "location": _location(Path(spec.path)),
            },
        )
        adapters.append(adapter)
    return adapters


def _location(path: Path) -> str:
    """Relative to ADAPTERS_DIR when inside it, so the tree can move as a whole."""
    try:
        return str(path.resolve().relative_to(Path(settings.ADAPTERS_DIR).resolve()))
    except ValueError:
        return str(path.resolve())
