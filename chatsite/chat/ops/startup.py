"""What a web process does once when it starts serving (local and lorax modes)."""

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from chatsite.chat.conversations import services
from chatsite.chat.streams import checkpoints
from chatsite.chat.workers.engine_holder import local_engine
from chatsite.errors import ChatError

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load the model in the background so the first answer does not wait for it, and from
    then on end the answers that a process which died left live. ENGINE_WARMUP=0 (the test
    suite's own process) skips both; a process's checkpointer still sweeps while it has live
    answers of its own (checkpoints.py)."""
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
    # A process that dies later (or died just before this one started, and so still looks
    # alive for WORKER_LOST_AFTER_S) is caught by a later sweep, here or in any other process.
    while True:
        time.sleep(checkpoints.SWEEP_EVERY_S)
        _sweep()


def _sweep() -> None:
    # Only answers whose owner is provably gone: another process on this database may be
    # streaming its own right now (processes.py).
    try:
        count = services.generations_interrupt_orphans(lost_after_s=settings.WORKER_LOST_AFTER_S)
    except DatabaseError:  # the next sweep tries again
        log.warning("could not sweep orphaned answers", exc_info=True)
        return
    finally:
        connection.close()
    if count:
        log.warning("marked %d answers cut off by a process that died as interrupted", count)
