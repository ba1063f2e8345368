"""Celery mode's control channel (Stop, a client leaving) belongs to one deployment: two that
share a Redis server on different database numbers never hear each other (pub/sub ignores the
database number)."""

import json
import os
import time

import pytest
import redis
from django.test import override_settings
from redis.connection import parse_url

from chatsite.chat.streams import tokenlog
from tests.conftest import require_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Another deployment on the same server: only its channel's name is used, nothing is written.
OTHER_DEPLOYMENT_URL = f"redis://127.0.0.1:6379/{(parse_url(REDIS_URL).get('db', 0) + 1) % 16}"

pytestmark = pytest.mark.services


@pytest.fixture
def client():
    require_service("Redis", REDIS_URL)
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


def listener_of(client, deployment_url: str):
    """What a worker of that deployment listens to."""
    with override_settings(REDIS_URL=deployment_url):
        channel = tokenlog.control_channel()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    deadline = time.monotonic() + 10
    while not client.pubsub_numsub(channel)[0][1] and time.monotonic() < deadline:
        time.sleep(0.01)
    return pubsub


def stop_from(client, deployment_url: str, message_id: int) -> None:
    with override_settings(REDIS_URL=deployment_url):
        client.publish(tokenlog.control_channel(), tokenlog.control_notice(message_id, "stop"))


def notices(pubsub, within: float = 2.0) -> list[dict]:
    heard, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        item = pubsub.get_message(timeout=0.1)
        if item is not None:
            heard.append(json.loads(item["data"]))
    return heard


def test_it_names_the_channel_after_the_deployments_database():
    with override_settings(REDIS_URL="redis://redis:6379/3"):
        assert tokenlog.control_channel() == "patchbay:db3:control"
    with override_settings(REDIS_URL="redis://redis:6379"):
        assert tokenlog.control_channel() == "patchbay:db0:control"


def test_it_keeps_a_stop_in_its_own_deployment(client):
    worker = listener_of(client, REDIS_URL)
    try:
        stop_from(client, OTHER_DEPLOYMENT_URL, 41)
        stop_from(client, REDIS_URL, 42)
        assert notices(worker) == [{"message": 42, "op": "stop"}]
    finally:
        worker.close()
