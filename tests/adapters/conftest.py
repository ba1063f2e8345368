"""Crafted adapters: copies of the demo adapters, broken in one way each, in temporary folders."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.validation import Limits
from tests.chat.conftest import socket_for  # noqa: F401  (the chat tests' signed-in sockets)

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
LIMITS = Limits(max_rank=64, max_bytes=2 * 1024**3)


class Crafted:
    """One adapter directory to spoil: `config` and `weights` are read and written whole."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def config(self) -> dict:
        return json.loads((self.path / CONFIG).read_text())

    @config.setter
    def config(self, value: dict) -> None:
        (self.path / CONFIG).write_text(json.dumps(value))

    def set(self, **changes) -> "Crafted":
        self.config = {**self.config, **changes}
        return self

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        # Copies: the loaded tensors map the file, which the setter is about to overwrite.
        return {key: value.clone() for key, value in load_file(self.path / WEIGHTS).items()}

    @weights.setter
    def weights(self, tensors: dict[str, torch.Tensor]) -> None:
        save_file(tensors, self.path / WEIGHTS)


@pytest.fixture
def craft(demo_model, tmp_path):
    """craft("demo-poet") -> a fresh copy of that demo adapter in its own temporary folder."""
    sources = {adapter.slug: adapter.path for adapter in demo_model.adapters}
    made = []

    def make(slug: str = "demo-poet") -> Crafted:
        path = tmp_path / "crafted" / f"{slug}-{len(made)}"
        shutil.copytree(sources[slug], path)
        made.append(path)
        return Crafted(path)

    return make


@pytest.fixture
def base_model(demo_model) -> str:
    return str(demo_model.base_dir)


@pytest.fixture
def adapters_dir(settings, tmp_path) -> Path:
    """A private ADAPTERS_DIR, so imports never touch the shared demo model's folder."""
    path = tmp_path / "adapters"
    path.mkdir()
    settings.ADAPTERS_DIR = path
    return path


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("stella", password="correct horse battery", is_staff=True)


@pytest.fixture
def chef_group(db):
    from django.contrib.auth.models import Group

    return Group.objects.create(name="chefs")


@pytest.fixture
def group_member(django_user_model, chef_group):
    user = django_user_model.objects.create_user("gus", password="correct horse battery")
    user.groups.add(chef_group)
    return user


@pytest.fixture
def restricted(demo_adapters, chef_group):
    """demo-poet staff only, demo-chef for the chefs group, demo-terse public but disabled."""
    poet, chef, terse = (demo_adapters[s] for s in ("demo-poet", "demo-chef", "demo-terse"))
    poet.visibility = "staff"
    chef.visibility = "groups"
    terse.enabled = False
    for adapter in (poet, chef, terse):
        adapter.save()
    chef.groups.add(chef_group)
    return demo_adapters
