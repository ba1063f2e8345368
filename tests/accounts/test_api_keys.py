"""API keys: made on the settings page or by command, shown once, stored hashed, revocable."""

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chatsite.accounts.keys import api_key_create
from chatsite.accounts.models import ApiKey

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_it_prints_a_new_key_alone_on_the_last_line(owner):
    out = StringIO()
    call_command("create_api_key", "alice", "--name", "ci", stdout=out)

    secret = out.getvalue().strip().splitlines()[-1]

    key = ApiKey.objects.get(user=owner)
    assert key.name == "ci"
    assert key.hashed == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(key.prefix) and secret not in key.hashed


def test_it_refuses_to_make_a_key_for_nobody():
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_key", "nobody", stdout=StringIO())


def test_it_shows_a_new_key_once_on_the_settings_page(client, owner):
    client.force_login(owner)

    created = client.post("/accounts/keys/", {"name": "laptop"}).content.decode()
    listed = client.get("/accounts/keys/").content.decode()

    secret = re.search(r'id="new-api-key">([^<]+)<', created).group(1)
    assert secret not in listed
    assert ApiKey.objects.get(user=owner).prefix in listed and "laptop" in listed


def test_it_lets_a_key_call_the_api(client, owner):
    _, secret = api_key_create(user=owner)
    response = client.get("/api/v1/conversations/", **bearer(secret))
    assert response.status_code == 200


def test_it_answers_401_to_a_revoked_key(client, owner):
    key, secret = api_key_create(user=owner)
    client.force_login(owner)
    client.post(f"/accounts/keys/{key.pk}/revoke/")
    client.logout()

    response = client.get("/api/v1/conversations/", **bearer(secret))

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "revoked" in response.json()["message"]


@pytest.mark.parametrize("header", ["Bearer pb_not-a-key", "Bearer ", "Bearer"])
def test_it_answers_401_to_a_wrong_key(client, owner, header):
    response = client.get("/api/v1/conversations/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_does_not_let_another_user_revoke_a_key(client, owner, other_user):
    key, secret = api_key_create(user=owner)
    client.force_login(other_user)

    assert client.post(f"/accounts/keys/{key.pk}/revoke/").status_code == 404
    client.logout()
    assert client.get("/api/v1/conversations/", **bearer(secret)).status_code == 200


def test_it_revokes_only_by_post(client, owner):
    key, _ = api_key_create(user=owner)
    client.force_login(owner)
    assert client.get(f"/accounts/keys/{key.pk}/revoke/").status_code == 405


def test_it_keeps_the_keys_page_free_of_inline_script(client, owner):
    client.force_login(owner)
    page = client.get("/accounts/keys/")
    assert "default-src 'self'" in page["Content-Security-Policy"]
    assert "<script>" not in page.content.decode() and "style=" not in page.content.decode()
