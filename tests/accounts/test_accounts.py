"""Sign up, log in, log out, change and reset a password; repeated failures lock out."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def test_it_signs_up_a_new_user_and_logs_them_in(client):
    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="carol").exists()
    assert client.get("/").status_code == 200


def test_it_explains_mismatched_passwords_and_creates_nobody(client):
    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": PASSWORD, "password2": PASSWORD + "!"},
    )
    assert response.status_code == 200
    assert "didn’t match" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_it_refuses_a_taken_username(client, owner):
    response = client.post(
        "/accounts/signup/",
        {"username": owner.username, "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_it_logs_in_with_username_and_password(client, owner):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_it_logs_out_on_post(client, owner):
    client.force_login(owner)
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_it_locks_out_after_five_failed_logins(client, owner):
    for _ in range(5):
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many" in response.content.decode()


def test_it_changes_a_password(client, owner):
    client.force_login(owner)
    response = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "a new long phrase", "new_password2": "a new long phrase"},
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("a new long phrase")


def test_it_emails_a_password_reset_link(client, owner):
    owner.email = "alice@example.com"
    owner.save()
    response = client.post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/accounts/reset/" in mail.outbox[0].body
