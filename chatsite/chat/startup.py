"""What a web process does once when it starts serving (local and lorax modes)."""

import logging
import threading
import time

from django.conf import settings
from django.db import connection

from chatsite.chat import services
from chatsite.chat.engine import local_engine
from chatsite.chat.errors import ChatError

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load the model in the background so the first answer does not wait for it, and end the
    answers a process that died left live. ENGINE_WARMUP=0 (the test suite's own process)
    skips both; a serving process's checkpointer still sweeps while it has live answers."""
    if settings.INFERENCE_MODE != "celery" and settings.ENGINE_WARMUP:
        threading.Thread(target=_warm_up, name="engine-warm-up", daemon=True).start()


def _warm_up() -> None:
    try:
        _sweep()
        if settings.INFERENCE_MODE == "local":
            local_engine()
    except ChatError as err:
        log.error("%s", err.message)
    finally:
        connection.close()
    # A process that died just before this one started still looks alive for a while: once
    # its silence has lasted WORKER_LOST_AFTER_S, sweep again.
    time.sleep(settings.WORKER_LOST_AFTER_S + 1)
    try:
        _sweep()
    finally:
        connection.close()


def _sweep() -> None:
    # Only answers whose owner is provably gone: another process on this database may be
    # streaming its own right now (processes.py).
    count = services.generations_interrupt_orphans(lost_after_s=settings.WORKER_LOST_AFTER_S)
    if count:
        log.warning("marked %d answers cut off by a process that died as interrupted", count)
