"""Fixtures shared by every test area: the demo model, the named users, service checks."""

import os
import socket
from urllib.parse import urlparse

import pytest

from inference.demo import DemoModel, build_demo_model
from tests.settings import TEST_MODEL_DIR


@pytest.fixture(scope="session")
def demo_model() -> DemoModel:
    # One build per machine, reused across runs (the builder is idempotent).
    return build_demo_model(TEST_MODEL_DIR / "base", TEST_MODEL_DIR / "adapters", seed=0)


@pytest.fixture
def demo_adapters(db, demo_model):
    from chatsite.adapters.services import demo_adapters_register

    return {adapter.slug: adapter for adapter in demo_adapters_register(demo_model)}


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("alice", password="correct horse battery")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="correct horse battery")


def require_service(name: str, url: str) -> None:
    """Skip when a service is not running here; with REQUIRE_SERVICES=1, fail instead."""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
    except OSError as exc:
        message = f"{name} is not reachable at {parsed.hostname}:{parsed.port} ({exc})"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate-limit counters live in Django's cache, keyed by user id; ids repeat across tests."""
    from django.core.cache import cache

    cache.clear()
