"""Who owns a live answer in local and lorax modes (docs/ARCHITECTURE.md, "Failures").

Each web process has a name of its own, never reused (a restarted process, or one in a
restarted container with the same pid, is a new owner). Answers it starts carry that name in
`Message.worker`; while it has live answers its checkpointer writes a heartbeat
(`ServerProcess`), and sweeps: an answer is ended for its owner only when the owner has not
beaten for WORKER_LOST_AFTER_S and nothing has saved the answer for as long. A second process
starting on the same database therefore leaves the first one's answers alone.
"""

from __future__ import annotations

import uuid

from django.conf import settings

from chatsite.chat.ops import metrics

NAME = f"{metrics.PROCESS_NAME}:{uuid.uuid4().hex[:8]}"


def owner_of_new_answers() -> str:
    """The owner to record on an answer as it is created: this process when it generates the
    answer itself; none in celery mode, where the worker that claims it writes its own name."""
    return "" if settings.INFERENCE_MODE == "celery" else NAME
