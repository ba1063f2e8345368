"""API keys: created and revoked here, checked by every API transport (Bearer auth).

A key is 32 random bytes; it is shown once and only its SHA-256 is stored (a key has enough
entropy that a slow hash adds nothing). The first characters are kept to tell keys apart.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from chatsite.accounts import key_revocation
from chatsite.accounts.models import ApiKey

KEY_PREFIX = "pb_"
SHOWN_CHARS = 10
# Writing last_used_at on every call would turn each read into a write; once a minute is enough.
LAST_USED_EVERY = timedelta(minutes=1)


def api_key_create(*, user, name: str = "") -> tuple[ApiKey, str]:
    """A new key for `user`: the row and the secret, which is never retrievable again."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user, name=name.strip()[:100], prefix=secret[:SHOWN_CHARS], hashed=_hash(secret)
    )
    return key, secret


def api_key_revoke(*, user, key_id: int) -> bool:
    """Revoke the key: calls with it get 401 from now on, and the streams it opened end."""
    revoked = bool(
        ApiKey.objects.filter(user=user, pk=key_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
    if revoked:
        key_revocation.announce_revoked(key_id)
    return revoked


def api_keys_of(user):
    return ApiKey.objects.filter(user=user)


def key_for_secret(secret: str) -> ApiKey | None:
    """The live key of an active user with this secret (its user loaded), else None."""
    key = (
        ApiKey.objects.select_related("user")
        .filter(hashed=_hash(secret), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def bearer_secret(authorization: str) -> str | None:
    """The key in an `Authorization: Bearer <key>` header; None when there is no such header."""
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
