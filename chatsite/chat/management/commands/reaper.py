from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatsite.chat.workers.reaper import reap_forever


class Command(BaseCommand):
    help = "End answers whose Celery worker went silent (celery mode). Runs until stopped."

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            raise CommandError("The reaper needs REDIS_URL: it reads worker heartbeats there.")
        self.stdout.write("reaper: watching worker heartbeats")
        reap_forever()
