"""Template context every page needs from the accounts app."""

from django.conf import settings


def mail(request) -> dict:
    """`mail_enabled`: whether a password reset email can reach anyone (EMAIL_URL is set)."""
    return {"mail_enabled": settings.MAIL_ENABLED}
