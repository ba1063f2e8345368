"""A web process that died left answers live: the next one marks them interrupted."""

import pytest

from chatsite.chat.models import Conversation, Message
from chatsite.chat.services import generations_interrupt_orphans

pytestmark = pytest.mark.django_db


def test_it_marks_live_answers_interrupted_and_keeps_their_text(owner):
    conversation = Conversation.objects.create(owner=owner)
    live = Message.objects.create(
        conversation=conversation, role="assistant", content="half an", status="streaming"
    )
    done = Message.objects.create(
        conversation=conversation, role="assistant", content="whole", status="complete"
    )

    assert generations_interrupt_orphans() == 1

    live.refresh_from_db()
    done.refresh_from_db()
    assert (live.status, live.content, live.finish_reason) == ("interrupted", "half an", "interrupted")
    assert done.status == "complete"
