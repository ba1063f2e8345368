"""`manage.py make_demo_model` writes the demo model and registers its adapters, once."""

import pytest
from django.core.management import CommandError, call_command

from chatsite.adapters.models import Adapter

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_dirs(settings, tmp_path):
    settings.BASE_MODEL = str(tmp_path / "base")
    settings.ADAPTERS_DIR = tmp_path / "adapters"
    return tmp_path


def test_it_registers_three_demo_adapters(model_dirs):
    call_command("make_demo_model")
    slugs = sorted(Adapter.objects.values_list("slug", flat=True))
    assert len(slugs) == 3 and all(slug.startswith("demo-") for slug in slugs)
    assert (model_dirs / "base" / "config.json").exists()


def test_it_is_idempotent_and_keeps_an_admins_choice(model_dirs):
    call_command("make_demo_model")
    Adapter.objects.filter(slug="demo-chef").update(enabled=False)

    call_command("make_demo_model")

    assert Adapter.objects.count() == 3
    assert not Adapter.objects.get(slug="demo-chef").enabled


def test_it_refuses_to_overwrite_a_real_model(model_dirs):
    (model_dirs / "base").mkdir()
    (model_dirs / "base" / "config.json").write_text("{}")
    with pytest.raises(CommandError, match="not the demo model"):
        call_command("make_demo_model")
