"""Mail: an optional address at sign-up, EMAIL_URL for real mail, and no reset link offered
where no mail can be sent."""

import pytest
from django.contrib.auth import get_user_model

from chatsite.env import email_settings

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def sign_up(client, **extra):
    return client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": PASSWORD, "password2": PASSWORD, **extra},
    )


def test_it_keeps_the_email_given_at_sign_up(client):
    assert sign_up(client, email="carol@example.com").status_code == 302
    assert get_user_model().objects.get(username="carol").email == "carol@example.com"


def test_it_signs_up_without_an_email(client):
    assert sign_up(client).status_code == 302
    assert get_user_model().objects.get(username="carol").email == ""


def test_it_refuses_a_malformed_email_at_sign_up(client):
    response = sign_up(client, email="not an address")
    assert response.status_code == 200
    assert "valid email" in response.content.decode()


def test_it_offers_no_reset_link_where_no_mail_can_be_sent(client, settings):
    settings.MAIL_ENABLED = False
    assert "Forgot your password?" not in client.get("/accounts/login/").content.decode()
    page = client.get("/accounts/password_reset/").content.decode()
    assert "cannot send a reset" in page and "Send reset link" not in page


def test_it_offers_the_reset_link_when_mail_is_set_up(client, settings):
    settings.MAIL_ENABLED = True
    assert "Forgot your password?" in client.get("/accounts/login/").content.decode()
    assert "Send reset link" in client.get("/accounts/password_reset/").content.decode()


def test_it_reads_an_smtp_url_with_starttls():
    mail = email_settings("smtp+tls://mailer:p%40ss@mail.example.com:2525")
    assert mail["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (mail["EMAIL_HOST"], mail["EMAIL_PORT"]) == ("mail.example.com", 2525)
    assert (mail["EMAIL_HOST_USER"], mail["EMAIL_HOST_PASSWORD"]) == ("mailer", "p@ss")
    assert mail["EMAIL_USE_TLS"] and not mail["EMAIL_USE_SSL"] and mail["MAIL_ENABLED"]


def test_it_defaults_the_port_by_scheme_and_knows_the_console():
    assert email_settings("smtps://mail.example.com")["EMAIL_PORT"] == 465
    assert email_settings("smtp://mail.example.com")["EMAIL_PORT"] == 25
    console = email_settings("console://")
    assert console["EMAIL_BACKEND"].endswith("console.EmailBackend") and console["MAIL_ENABLED"]
    assert email_settings(None)["MAIL_ENABLED"] is False
