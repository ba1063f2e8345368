"""The production services this suite runs against when they are here (REQUIRE_SERVICES=1 in CI)."""

import os
import uuid

import pytest
from django.db import connection

from tests.conftest import require_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.services
@pytest.mark.django_db
def test_it_runs_the_database_tests_on_postgresql_when_ci_asks_for_services():
    if os.environ.get("REQUIRE_SERVICES") != "1" and connection.vendor != "postgresql":
        pytest.skip("DATABASE_URL does not name PostgreSQL")
    assert connection.vendor == "postgresql"


@pytest.mark.services
async def test_it_carries_a_message_over_the_redis_channel_layer():
    require_service("Redis", REDIS_URL)
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[REDIS_URL])
    channel = await layer.new_channel()
    payload = {"type": "probe", "id": uuid.uuid4().hex}
    await layer.send(channel, payload)
    assert await layer.receive(channel) == payload
    await layer.flush()
