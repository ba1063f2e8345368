"""The chat page in Debian's chromium against a real Daphne: what a person sees and does.

With UPDATE_SCREENSHOTS=1, the screenshots of the main states in docs/screenshots/ (shown in the
README) are taken again as the tests pass.
"""

import json
import os
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADAPTERS, HOLD
from tests.e2e.servers import ROOT

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "docs" / "screenshots"
ANSWER = '[data-testid="message"][data-role="assistant"]'
USER = '[data-testid="message"][data-role="user"]'
# Records every length the newest answer's text passes through, as the DOM changes.
WATCH_LENGTHS = """() => {
  window.__lengths = [];
  new MutationObserver(() => {
    const bodies = document.querySelectorAll('%s [data-testid="message-body"]');
    const body = bodies[bodies.length - 1];
    if (body) window.__lengths.push(body.textContent.length);
  }).observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true});
}""" % ANSWER


def shot(page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return  # a test run leaves the committed pictures alone
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def send(page, text: str) -> None:
    """Send from the composer with Enter, and wait until its answer has started."""
    expect(page.get_by_test_id("send")).to_be_enabled()
    answers = page.locator(ANSWER).count()
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")
    expect(page.locator(ANSWER)).to_have_count(answers + 1)


def last_answer(page):
    return page.locator(ANSWER).last


def wait_until_done(page, status: str = "complete") -> None:
    expect(last_answer(page)).to_have_attribute("data-status", status, timeout=60_000)


def test_it_streams_an_answer_progressively_from_the_chosen_adapter(visit):
    person = visit()
    person.sign_up("ada")
    page = person.page
    page.get_by_text("Adapter & system prompt").click()
    page.get_by_test_id("adapter-picker").select_option(ADAPTERS[0][0])
    expect(page.get_by_test_id("adapter-description")).not_to_be_empty()
    page.evaluate(WATCH_LENGTHS)
    send(page, "Write me a poem about **rivers**.")
    wait_until_done(page)

    lengths = {length for length in page.evaluate("window.__lengths") if length}
    assert len(lengths) >= 3, f"the answer did not grow progressively: {sorted(lengths)}"
    assert re.search(r"/c/\d+/$", page.url)
    meta = last_answer(page).get_by_test_id("message-meta")
    expect(meta).to_contain_text(ADAPTERS[0][1])
    expect(meta).to_contain_text(re.compile(r"\d+ tokens · first token \d+ ms · [\d.]+ tokens/s"))
    expect(page.locator(USER)).to_have_text(re.compile(r"Write me a poem about \*\*rivers\*\*\."))
    expect(page.get_by_test_id("conversation-list")).to_contain_text("Write me a poem")
    shot(page, "chat")


def send_held(page, text: str = "Tell me a long story.") -> None:
    """Send a message whose answer the test's socket route holds open (`RoutedSocket`)."""
    send(page, text)
    expect(last_answer(page).get_by_test_id("message-body")).not_to_be_empty()


def stop_the_answer(page) -> None:
    page.get_by_test_id("stop").click()
    wait_until_done(page, "stopped")


def test_it_stops_keeps_the_partial_answer_and_shows_it_after_a_reload(visit):
    person = visit()
    person.sign_up("bea")
    page = person.page
    RoutedSocket(page, hold=True)
    page.reload()
    person.wait_until_connected()

    send_held(page)
    # Stop once a few lines have come (a held answer would go on for minutes).
    expect(last_answer(page).get_by_test_id("message-body")).to_have_text(re.compile(r".{120,}", re.S))
    stop_the_answer(page)
    partial = last_answer(page).get_by_test_id("message-body").text_content()

    page.reload()
    person.wait_until_connected()
    expect(last_answer(page)).to_have_attribute("data-status", "stopped")
    expect(last_answer(page).get_by_test_id("message-body")).to_have_text(partial)
    expect(last_answer(page).get_by_test_id("message-note")).to_contain_text("Stopped")
    shot(page, "stopped")

    last_answer(page).get_by_test_id("continue").click()
    wait_until_done(page)
    longer = last_answer(page).get_by_test_id("message-body").text_content()
    assert longer.startswith(partial.strip()[:20]) and len(longer) > len(partial)


def test_it_goes_on_with_a_live_answer_after_a_reload(visit):
    person = visit()
    person.sign_up("cy")
    page = person.page
    RoutedSocket(page, hold=True)
    page.reload()
    person.wait_until_connected()
    send_held(page)

    with page.expect_response(re.compile(r"/messages/$")) as response:
        page.reload()
    data = response.value.json()
    saved = (data if isinstance(data, list) else data["results"])[-1]
    assert saved["status"] in ("pending", "streaming")

    body = last_answer(page).get_by_test_id("message-body")
    expect(body).to_have_text(re.compile(re.escape(saved["content"].strip()[:40]) + ".{20,}", re.S))
    stop_the_answer(page)
    assert body.text_content().startswith(saved["content"].strip())


class RoutedSocket:
    """Routes the page's socket through the test, recording what the server sends, so that
    the test can cut the connection as a network drop would. With `hold`, every chat.send
    asks for an answer held open until the test stops it (tests/holding.py)."""

    def __init__(self, page, hold: bool = False):
        self.events: list[dict] = []
        self.routes = []
        self.hold = hold
        page.route_web_socket(re.compile(r"/ws/chat/$"), self._route)

    def _route(self, page_side) -> None:
        server_side = page_side.connect_to_server()
        server_side.on_message(lambda message: self._from_server(page_side, message))
        page_side.on_message(lambda message: server_side.send(self._from_page(message)))
        self.routes.append((page_side, server_side))

    def _from_page(self, message: str) -> str:
        frame = json.loads(message)
        if self.hold and frame.get("type") == "chat.send":
            frame["params"] = {**frame.get("params", {}), **HOLD}
        return json.dumps(frame)

    def _from_server(self, page_side, message) -> None:
        self.events.append(json.loads(message))
        page_side.send(message)

    def drop(self) -> None:
        page_side, server_side = self.routes[-1]
        server_side.close()
        page_side.close(code=4000, reason="network drop")

    def until_more_tokens(self, message_id: int, than: int, page, within: float = 30) -> None:
        """Wait (letting the page run) until more than `than` characters of tokens came."""
        deadline = time.monotonic() + within
        while len(self.tokens(message_id)) <= than:
            assert time.monotonic() < deadline, "no token came after the reconnect"
            page.wait_for_timeout(50)

    def tokens(self, message_id: int) -> str:
        return "".join(
            event["payload"]["text"] for event in self.events
            if event["type"] == "inference.token" and event["payload"]["message"] == message_id
        )


def test_it_reconnects_after_a_drop_and_resumes_without_gaps(visit, server):
    person = visit()
    person.sign_up("dora")
    page = person.page
    socket = RoutedSocket(page, hold=True)
    page.reload()
    person.wait_until_connected()
    send_held(page)
    message_id = int(last_answer(page).get_attribute("data-message-id"))

    socket.drop()
    expect(page.locator("#connection-notice")).to_be_hidden()
    socket.until_more_tokens(message_id, than=len(socket.tokens(message_id)), page=page)
    stop_the_answer(page)
    assert len(socket.routes) == 2
    conversation_id = re.search(r"/c/(\d+)/$", page.url).group(1)
    saved = page.request.get(f"{server.base_url}/api/v1/conversations/{conversation_id}/messages/")
    data = saved.json()
    rows = data if isinstance(data, list) else data["results"]
    content = next(row for row in rows if row["id"] == message_id)["content"]
    assert socket.tokens(message_id) == content  # every token once: no gap, no repeat
    shown = last_answer(page).get_by_test_id("message-body").text_content()
    assert " ".join(shown.split()) == " ".join(content.split())


def test_it_regenerates_and_switches_between_sibling_answers(visit):
    person = visit()
    person.sign_up("dee")
    page = person.page
    send(page, "Say something.")
    wait_until_done(page)
    first = last_answer(page).get_by_test_id("message-body").text_content()

    last_answer(page).get_by_test_id("regenerate").click()
    expect(last_answer(page).get_by_test_id("sibling-position")).to_have_text("2/2")
    wait_until_done(page)
    second = last_answer(page).get_by_test_id("message-body").text_content()
    assert page.locator(ANSWER).count() == 1

    last_answer(page).get_by_test_id("sibling-previous").click()
    expect(last_answer(page).get_by_test_id("sibling-position")).to_have_text("1/2")
    expect(last_answer(page).get_by_test_id("message-body")).to_have_text(first)
    last_answer(page).get_by_test_id("sibling-next").click()
    expect(last_answer(page).get_by_test_id("message-body")).to_have_text(second)
    shot(page, "siblings")


def test_it_edits_a_message_and_resends_it_as_a_new_branch(visit):
    person = visit()
    person.sign_up("eve")
    page = person.page
    send(page, "First wording.")
    wait_until_done(page)
    page.locator(USER).last.get_by_test_id("edit").click()
    page.get_by_test_id("edit-box").fill("Second wording.")
    page.get_by_test_id("edit-send").click()
    expect(page.locator(USER).last.get_by_test_id("sibling-position")).to_have_text("2/2")
    expect(page.locator(USER).last.get_by_test_id("message-body")).to_have_text("Second wording.")
    wait_until_done(page)
    page.locator(USER).last.get_by_test_id("sibling-previous").click()
    expect(page.locator(USER).last.get_by_test_id("message-body")).to_have_text("First wording.")


def test_it_switches_adapters_within_a_conversation_and_remembers_the_choice(visit):
    person = visit()
    person.sign_up("fay")
    page = person.page
    send(page, "Hello, base model.")
    wait_until_done(page)
    expect(last_answer(page).get_by_test_id("message-meta")).to_contain_text("Base model")

    page.get_by_text("Adapter & system prompt").click()
    page.get_by_test_id("adapter-picker").select_option(ADAPTERS[1][0])
    expect(page.locator("#settings-status")).to_have_text("Saved.")
    send(page, "Hello, chef.")
    wait_until_done(page)
    expect(last_answer(page).get_by_test_id("message-meta")).to_contain_text(ADAPTERS[1][1])

    page.reload()
    expect(page.get_by_test_id("adapter-picker")).to_have_value(ADAPTERS[1][0])
    expect(page.locator(ANSWER).first.get_by_test_id("message-meta")).to_contain_text("Base model")


def test_it_renames_searches_and_deletes_conversations(visit):
    person = visit()
    person.sign_up("gus")
    page = person.page
    send(page, "About apples.")
    wait_until_done(page)
    page.get_by_test_id("new-conversation").click()
    send(page, "About pears.")
    wait_until_done(page)
    sidebar = page.get_by_test_id("conversation-list")
    expect(sidebar.locator("li")).to_have_count(2)
    expect(sidebar.locator("li").first).to_contain_text("About pears")  # newest first

    sidebar.locator("li").first.hover()
    sidebar.locator("li").first.get_by_test_id("conversation-rename").click()
    page.get_by_test_id("rename-input").fill("Pear notes")
    page.get_by_test_id("rename-input").press("Enter")
    expect(sidebar.locator("li").first).to_have_text(re.compile("Pear notes"))

    page.get_by_test_id("conversation-search").fill("apples")
    expect(sidebar.locator("li")).to_have_count(1)
    expect(sidebar).to_contain_text("About apples")
    page.get_by_test_id("conversation-search").fill("")
    expect(sidebar.locator("li")).to_have_count(2)

    sidebar.locator("li", has_text="Pear notes").get_by_test_id("conversation-delete").click()
    expect(sidebar.locator("li")).to_have_count(1)
    assert person.dialogs and "Pear notes" in person.dialogs[0]
    expect(page.locator('[data-testid="message"]')).to_have_count(0)


USER_PAYLOAD = '<img src=x onerror="window.__xss=\'user\'"><script>window.__xss=\'user\'</script>'
MODEL_PAYLOAD = """# Answer
<script>window.__xss = 'script'; alert(1)</script>
<img src="http://evil.example/pixel.png" onerror="window.__xss='img'">

![tracker](http://evil.example/track.png)

[click me](javascript:window.__xss='link') and [a site](http://evil.example/page)

<a href="http://evil.example/x" onclick="window.__xss='a'">raw link</a>
<iframe src="http://evil.example/frame"></iframe>
<style>body { background: url(http://evil.example/bg.png) }</style>

```python
def greet():
    return "<script>alert(1)</script>"
```
"""


def test_it_renders_hostile_user_and_model_text_inertly(visit, server):
    person = visit()
    person.sign_up("mallory")
    page = person.page
    send(page, USER_PAYLOAD)
    wait_until_done(page)
    expect(page.locator(USER).get_by_test_id("message-body")).to_have_text(USER_PAYLOAD)

    conversation_id = server.shell(
        "from django.contrib.auth import get_user_model\n"
        "from chatsite.chat.models import Conversation, Message\n"
        "user = get_user_model().objects.get(username='mallory')\n"
        "c = Conversation.objects.create(owner=user, title='Hostile answer')\n"
        "q = Message.objects.create(conversation=c, role='user', content='Show me markdown')\n"
        f"Message.objects.create(conversation=c, parent=q, role='assistant', content={MODEL_PAYLOAD!r},"
        " status='complete', finish_reason='stop')\n"
        "print(c.pk)"
    ).splitlines()[-1]
    page.goto(f"{server.base_url}/c/{conversation_id}/")
    answer = last_answer(page)
    expect(answer.locator("pre code")).to_contain_text("def greet")
    expect(answer.locator("pre code .hljs-keyword").first).to_have_text("def")
    expect(answer.locator('pre [data-testid="copy-code"]')).to_have_count(1)
    expect(answer.locator("a", has_text="a site")).to_have_attribute("rel", re.compile("noopener.*nofollow"))
    expect(answer).to_contain_text("[image: tracker]")
    expect(answer).to_contain_text("<script>window.__xss")  # shown as text
    page.wait_for_timeout(500)

    assert page.evaluate("window.__xss") is None
    assert person.dialogs == []
    for selector in ("script", "img", "iframe", "style", "[onerror]", "[onclick]", "a[href^='javascript']"):
        assert page.locator(f"#messages {selector}").count() == 0, selector
    assert person.foreign_requests() == []
    shot(page, "markdown")


def test_it_shows_each_person_only_their_own_conversations(visit, server):
    owner = visit()
    owner.sign_up("olive")
    send(owner.page, "Olive's secret recipe")
    wait_until_done(owner.page)
    own_url = owner.page.url

    stranger = visit()
    stranger.sign_up("oscar")
    expect(stranger.page.get_by_test_id("conversation-list")).to_contain_text("No conversations yet")
    assert "secret recipe" not in stranger.page.content()
    response = stranger.page.goto(own_url)
    assert response.status == 404
    assert "secret recipe" not in stranger.page.content()


def test_it_fits_a_phone_and_has_a_dark_theme(visit):
    person = visit(viewport={"width": 390, "height": 844}, color_scheme="dark")
    person.sign_up("pia")
    page = person.page
    send(page, "Hello from a phone.")
    wait_until_done(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 20, 24)"
    shot(page, "phone-dark")
