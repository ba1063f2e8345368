"""What a web process does once when it starts serving (INFERENCE_MODE=local)."""

import logging
import threading

from django.conf import settings
from django.db import connection

from chatsite.chat import services
from chatsite.chat.engine import local_engine
from chatsite.chat.errors import ChatError

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load the model in the background so the first answer does not wait for it."""
    if settings.INFERENCE_MODE == "local" and settings.ENGINE_WARMUP:
        threading.Thread(target=_warm_up, name="engine-warm-up", daemon=True).start()


def _warm_up() -> None:
    try:
        # In local mode the engine lives in this process: anything still live in the
        # database was cut off when the previous process died.
        count = services.generations_interrupt_orphans()
        if count:
            log.warning("marked %d answers cut off by a restart as interrupted", count)
        local_engine()
    except ChatError as err:
        log.error("%s", err.message)
    finally:
        connection.close()
