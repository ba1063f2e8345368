from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chatsite.accounts.keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user and print it (alone, on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label to tell the key apart")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user called “{username}”.")
        key, secret = api_key_create(user=user, name=name)
        self.stdout.write(f"Created API key {key.prefix}… for {username}. It is shown only once:")
        self.stdout.write(secret)
