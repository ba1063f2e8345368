"""Celery tasks: thin interfaces that take ids and call the worker side."""

from celery import shared_task
from celery.signals import worker_ready

from chatsite.chat import worker


@shared_task(name="chatsite.chat.tasks.generate", acks_late=False, ignore_result=True)
def generate(message_id: int, params: dict, kind: str, grace_s: float) -> None:
    worker.generate(message_id, params, kind, grace_s)


@worker_ready.connect
def _warm_up(**kwargs) -> None:
    """Load the model when the worker starts, not on its first request."""
    worker.start_process()
