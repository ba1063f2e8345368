"""Celery tasks: thin interfaces that take ids and call the worker side."""

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready

from chatsite.chat.workers import task_routing, worker


@shared_task(name="chatsite.chat.tasks.generate", acks_late=False, ignore_result=True)
def generate(
    message_id: int, params: dict, kind: str, grace_s: float, routed_to: str | None = None,
    resume: dict | None = None,
) -> None:
    worker.generate(message_id, params, kind, grace_s, routed_to=routed_to, resume=resume)


@celeryd_after_setup.connect
def _consume_own_queue(sender, instance, **kwargs) -> None:
    """Besides `gpu`, this worker's own queue, where the web tier sends the tasks it should
    take (task_routing.py); Celery's documented way to add a queue per worker."""
    instance.app.amqp.queues.select_add(task_routing.worker_queue(worker.WORKER_NAME))
    worker.set_capacity(instance.concurrency)


@worker_ready.connect
def _warm_up(**kwargs) -> None:
    """Load the model when the worker starts, not on its first request."""
    worker.start_process()
