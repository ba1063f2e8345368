"""The native API's rate limit: DRF's throttle hook over chat.conversations.limits, so DRF views count in the
same per-user budget as every other transport (its own module: DRF imports it while building
APIView)."""

from rest_framework.throttling import BaseThrottle

from chatsite.chat.conversations import limits
from chatsite.errors import ChatError


class ApiRateThrottle(BaseThrottle):
    """RATE_LIMIT requests per user (per address before sign-in)."""

    def __init__(self):
        self._wait = None

    def allow_request(self, request, view):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        try:
            limits.rate_check(ident)
        except ChatError as err:
            self._wait = err.retry_after
            return False
        return True

    def wait(self):
        return self._wait
