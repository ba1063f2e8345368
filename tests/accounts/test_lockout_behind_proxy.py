"""Behind the TLS proxy every request comes from the proxy's address: the lockout still counts
per client, from X-Forwarded-For, read only when a trusted proxy sent it (chatsite/proxies.py)."""

from ipaddress import ip_network

import pytest
from django.test import override_settings

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("owner")]

PASSWORD = "correct horse battery"
PROXY = "10.0.0.5"
FIRST_CLIENT, SECOND_CLIENT = "203.0.113.1", "203.0.113.2"
behind_the_proxy = override_settings(TRUSTED_PROXIES=[ip_network(PROXY)])


def log_in(client, password: str, peer: str, forwarded: str | None = None) -> int:
    headers = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(
        "/accounts/login/", {"username": "alice", "password": password}, **headers
    ).status_code


def fail_five_times(client, peer: str, forwarded=lambda attempt: None) -> None:
    for attempt in range(5):
        log_in(client, "wrong", peer, forwarded(attempt))  # the fifth is answered with the lockout


@behind_the_proxy
def test_it_locks_out_only_the_client_that_failed_behind_a_trusted_proxy(client):
    fail_five_times(client, PROXY, lambda _: FIRST_CLIENT)

    assert log_in(client, PASSWORD, PROXY, FIRST_CLIENT) == 429
    assert log_in(client, PASSWORD, PROXY, SECOND_CLIENT) == 302


@behind_the_proxy
def test_it_reads_the_client_from_the_right_so_a_written_header_changes_nothing(client):
    # The proxy appends the real client; whatever the client wrote stays on the left.
    fail_five_times(client, PROXY, lambda attempt: f"198.51.100.{attempt}, {FIRST_CLIENT}")

    assert log_in(client, PASSWORD, PROXY, FIRST_CLIENT) == 429


@behind_the_proxy
def test_it_ignores_forwarded_addresses_from_a_peer_that_is_not_a_trusted_proxy(client):
    fail_five_times(client, FIRST_CLIENT, lambda attempt: f"198.51.100.{attempt}")

    assert log_in(client, PASSWORD, FIRST_CLIENT, "198.51.100.99") == 429
    assert log_in(client, PASSWORD, SECOND_CLIENT) == 302


def test_it_trusts_no_proxy_unless_told(client):
    fail_five_times(client, PROXY, lambda _: FIRST_CLIENT)

    assert log_in(client, PASSWORD, PROXY, SECOND_CLIENT) == 429
