"""The Celery application. Workers own a GPU engine; see docs/ARCHITECTURE.md, "Celery mode"."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

app = Celery("chatsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The chat app's tasks live in chatsite/chat/workers/tasks.py, not in the app's own `tasks`
# module where plain autodiscovery looks; name the package (the task's NAME stays
# "chatsite.chat.tasks.generate", which CELERY_TASK_ROUTES matches).
app.autodiscover_tasks(["chatsite.chat.workers"])
