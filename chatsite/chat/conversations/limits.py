"""Per-user limits, the same on every transport: the socket, the native, OpenAI and LoRAX APIs
and the page's actions (docs/ARCHITECTURE.md, "Limits"; README says what each one counts).

- `MAX_LIVE_ANSWERS`: answers of one user being generated at once (pending or streaming), from
  every transport together. Counted in the database, so it holds across processes, and counted
  inside the transaction that records the new answer, after taking a lock on the user's row:
  two starts of one user never count at the same time, so a simultaneous burst cannot slip
  past the count. On PostgreSQL the lock is `SELECT … FOR UPDATE`; on SQLite every write
  transaction is IMMEDIATE (chatsite/settings.py) and already holds the database's one write
  lock, so the same code is atomic on both.
- `RATE_LIMIT`: requests (HTTP calls, socket frames, page actions) per user, per address
  before sign-in; one budget for all transports. A fixed-window counter in Django's cache:
  `add` and `incr` are atomic there (a lock in the in-memory cache, one command in Redis), so a
  burst is counted exactly, unlike a read-modify-write history.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection

from chatsite.chat.conversations import selectors
from chatsite.errors import ChatError

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def live_answer_slot(user) -> None:
    """Refuse a new answer when `user` has MAX_LIVE_ANSWERS being generated. Call it inside the
    transaction that records the answer: the lock it takes lasts until that transaction ends."""
    if connection.features.has_select_for_update:  # SQLite has no row locks: see above
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    if selectors.live_generations_count(user) >= settings.MAX_LIVE_ANSWERS:
        raise ChatError(
            "too_many_streams",
            f"You already have {settings.MAX_LIVE_ANSWERS} answers being generated; "
            "wait for one to finish or stop it.",
        )


def rate_check(ident: str) -> None:
    """Count one request for `ident` ("user:<pk>" or "addr:<ip>"); over RATE_LIMIT, refuse it
    with ChatError("rate_limited") whose `retry_after` says when the window ends."""
    allowed, period = rate_limit()
    now = time.time()
    window = int(now // period)
    key = f"rate:{ident}:{period}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=period + 1)
        used = 1
    if used > allowed:
        wait = max(1, math.ceil((window + 1) * period - now))
        err = ChatError(
            "rate_limited", f"Too many requests; slow down and try again in {wait} seconds."
        )
        err.retry_after = wait
        raise err


def rate_check_user(user) -> None:
    rate_check(f"user:{user.pk}")


def rate_limit() -> tuple[int, int]:
    """RATE_LIMIT as (requests, seconds)."""
    count, unit = settings.RATE_LIMIT.split("/")
    return int(count), PERIODS[unit]
