"""`python manage.py import_adapter DIR --slug SLUG`: exit 0 when registered, else a reason."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from chatsite.adapters.models import Adapter
from tests.adapters.conftest import CONFIG, WEIGHTS

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_it_copies_and_registers_an_adapter_enabled_and_public(craft, adapters_dir, capsys):
    source = craft("demo-terse").path

    call_command("import_adapter", str(source), "--slug", "terse", "--name", "Terse")

    adapter = Adapter.objects.get(slug="terse")
    assert (adapter.name, adapter.enabled, adapter.visibility) == ("Terse", True, "public")
    assert adapter.location == "terse"
    assert sorted(p.name for p in (adapters_dir / "terse").iterdir()) == ["README.md", CONFIG, WEIGHTS]
    assert (adapter.rank, adapter.validated_at is not None) == (4, True)
    assert "Registered terse" in capsys.readouterr().out


def test_it_registers_disabled_or_staff_only_when_asked(craft, adapters_dir):
    call_command("import_adapter", str(craft().path), "--slug", "quiet", "--disabled")
    call_command("import_adapter", str(craft().path), "--slug", "inner", "--staff-only")

    assert Adapter.objects.get(slug="quiet").enabled is False
    assert Adapter.objects.get(slug="inner").visibility == "staff"
    assert Adapter.objects.get(slug="inner").name == "inner"


def test_it_rejects_a_bad_adapter_and_leaves_nothing_behind(craft, adapters_dir):
    crafted = craft().set(target_modules=["query_key_value"])

    with pytest.raises(CommandError, match="Adapter rejected: .*no layer called query_key_value"):
        call_command("import_adapter", str(crafted.path), "--slug", "broken")

    assert not Adapter.objects.filter(slug="broken").exists()
    assert [p.name for p in adapters_dir.iterdir() if p.name != ".incoming"] == []
    assert list((adapters_dir / ".incoming").iterdir()) == []


def test_it_rejects_pickle_weights(craft, adapters_dir):
    crafted = craft()
    torch.save(crafted.weights, crafted.path / "adapter_model.bin")

    with pytest.raises(CommandError, match="adapter_model.bin is a pickle file"):
        call_command("import_adapter", str(crafted.path), "--slug", "pickled")


def test_it_rejects_a_slug_that_is_taken(craft, adapters_dir):
    call_command("import_adapter", str(craft().path), "--slug", "poet")

    with pytest.raises(CommandError, match="already registered"):
        call_command("import_adapter", str(craft().path), "--slug", "poet")


def test_it_rejects_a_slug_that_is_not_a_slug(craft, adapters_dir):
    with pytest.raises(CommandError, match="valid “slug”"):
        call_command("import_adapter", str(craft().path), "--slug", "../escape")

    assert not (adapters_dir.parent / "escape").exists()


def test_it_exits_non_zero_with_the_reason_when_rejected(tmp_path):
    # A real process, for the real exit status; success is the call_command tests above (a
    # command that returns exits 0). This rejection needs neither the database nor the model.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "ADAPTERS_DIR": str(tmp_path / "adapters"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "import_adapter", str(tmp_path / "nowhere"), "--slug", "x"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 1
    assert "Adapter rejected:" in result.stderr and "is not a directory" in result.stderr
    assert "Traceback" not in result.stderr
