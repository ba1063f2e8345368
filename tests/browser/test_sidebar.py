"""The chat page's sidebar and settings panel as a person uses them: whole titles with dates,
API calls kept apart, a rename that keeps the order, a panel that gets out of the way."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADAPTERS
from tests.browser.test_chat_page import ANSWER, send, shot, wait_until_done

pytestmark = pytest.mark.e2e

LONG_TITLE = "What is the longest river in South America, please?"
WRAPPED_SECOND_TITLE = """() => {
  const item = document.querySelectorAll('[data-testid="conversation-list"] .conversation-item')[1];
  const title = item && item.querySelector('[data-testid="conversation-title"]');
  return Boolean(title) && title.scrollWidth <= title.clientWidth && title.getBoundingClientRect().height > 20;
}"""


def test_it_folds_the_settings_panel_away_after_sending(visit):
    person = visit()
    person.sign_up("fold")
    page = person.page
    page.get_by_text("Adapter & system prompt").click()
    expect(page.get_by_test_id("settings")).to_have_attribute("open", "")
    send(page, "Hello there.")
    expect(page.get_by_test_id("settings")).not_to_have_attribute("open", "")
    wait_until_done(page)


def test_it_folds_the_settings_panel_away_on_a_phone_too(visit):
    person = visit(viewport={"width": 390, "height": 844})
    person.sign_up("fold-phone")
    page = person.page
    page.get_by_text("Adapter & system prompt").click()
    send(page, "Hello from a phone.")
    expect(page.get_by_test_id("settings")).not_to_have_attribute("open", "")
    wait_until_done(page)
    panel = page.get_by_test_id("settings").bounding_box()
    assert panel["height"] < 80, panel  # the summary line only: the conversation has the room


def test_it_shows_whole_titles_and_dates_and_keeps_the_order_on_rename(visit):
    person = visit()
    person.sign_up("titles")
    page = person.page
    send(page, LONG_TITLE)
    wait_until_done(page)
    page.get_by_test_id("new-conversation").click()
    send(page, "Second one.")
    wait_until_done(page)

    sidebar = page.get_by_test_id("conversation-list")
    titles = sidebar.get_by_test_id("conversation-title")
    expect(titles).to_have_text(["Second one.", LONG_TITLE])
    older = sidebar.locator(".conversation-item").nth(1)
    # Polled: the list is drawn again when an answer ends, and a replaced title measures 0.
    assert page.wait_for_function(WRAPPED_SECOND_TITLE), "a long title should wrap onto more lines, not be cut"
    expect(older.locator("a")).to_have_attribute("title", re.compile(re.escape(LONG_TITLE)))
    expect(sidebar.get_by_test_id("conversation-date").first).to_have_text(re.compile(r"\d"))

    older.hover()
    older.get_by_test_id("conversation-rename").click()
    page.get_by_test_id("rename-input").fill("Rivers")
    page.get_by_test_id("rename-input").press("Enter")
    expect(titles).to_have_text(["Second one.", "Rivers"])  # renamed, not moved to the top
    page.reload()
    expect(titles).to_have_text(["Second one.", "Rivers"])


def test_it_keeps_api_conversations_apart_from_chats(visit, server):
    person = visit()
    person.sign_up("apiuser")
    page = person.page
    send(page, "A chat of mine.")
    wait_until_done(page)
    server.shell(
        "from django.contrib.auth import get_user_model; from chatsite.chat.models import Conversation; "
        "owner = get_user_model().objects.get(username='apiuser'); "
        "[Conversation.objects.create(owner=owner, title='Say hi', source=source) "
        "for source in ('openai', 'lorax', 'openai')]"
    )
    page.reload()
    sidebar = page.get_by_test_id("conversation-list")
    group = sidebar.get_by_test_id("api-conversations")
    expect(group.locator("summary")).to_have_text("From the API (3)")
    expect(group).not_to_have_attribute("open", "")
    chats = sidebar.locator(":scope > .conversation-item")
    expect(chats).to_have_count(1)
    expect(chats.first).to_contain_text("A chat of mine.")

    group.locator("summary").click()
    expect(group.get_by_test_id("conversation-date")).to_have_count(3)
    expect(group.get_by_test_id("conversation-date").first).to_contain_text("API")


def test_it_exports_the_conversation_on_show_and_imports_a_file(visit, tmp_path):
    person = visit()
    person.sign_up("porter")
    page = person.page
    send(page, "Remember the rivers.")
    wait_until_done(page)
    page.get_by_text("Adapter & system prompt").click()
    with page.expect_download() as download:
        page.get_by_test_id("conversation-export").get_by_text("JSONL").click()
    exported = tmp_path / "one.jsonl"
    download.value.save_as(exported)
    record = json.loads(exported.read_text())
    assert record["messages"][0] == {"role": "user", "content": "Remember the rivers."}

    chat = {"messages": [{"role": "user", "content": "An imported question"},
                         {"role": "assistant", "content": "An imported answer"}]}
    upload = tmp_path / "import.jsonl"
    upload.write_text(json.dumps(chat) + "\n")
    page.get_by_test_id("import-file").set_input_files(str(upload))
    expect(page.get_by_role("status").filter(has_text="Imported 1 conversation.")).to_be_visible()
    sidebar = page.get_by_test_id("conversation-list")
    sidebar.get_by_text("An imported question").click()
    expect(page.get_by_test_id("message-list")).to_contain_text("An imported answer")


def test_it_compares_adapters_side_by_side_and_keeps_the_chosen_answer(visit):
    person = visit()
    person.sign_up("compare")
    page = person.page
    page.get_by_text("Adapter & system prompt").click()
    (first_slug, first_name), (_, second_name) = ADAPTERS
    page.get_by_test_id("adapter-picker").select_option(first_slug)
    boxes = page.get_by_test_id("compare-with")
    boxes.get_by_label("Base model").check()
    boxes.get_by_label(second_name).check()
    page.get_by_test_id("composer").fill("Tell me about rivers.")
    page.get_by_test_id("composer").press("Enter")

    grid = page.get_by_test_id("compare")
    cells = grid.locator(".compare-cell")
    expect(cells).to_have_count(3)
    for index in range(3):
        expect(cells.nth(index).locator(ANSWER)).to_have_attribute("data-status", "complete", timeout=180_000)
    metas = cells.locator('[data-testid="message-meta"]')
    expect(metas.nth(0)).to_contain_text(first_name)
    expect(metas.nth(1)).to_contain_text("Base model")
    expect(metas.nth(2)).to_contain_text(second_name)
    boxes_side_by_side = [cells.nth(i).bounding_box() for i in range(2)]
    assert boxes_side_by_side[0]["y"] == boxes_side_by_side[1]["y"]
    shot(page, "compare")

    cells.nth(2).get_by_test_id("compare-keep").click()
    expect(grid).to_have_count(0)
    expect(page.locator(ANSWER)).to_have_count(1)
    expect(page.locator(ANSWER).get_by_test_id("message-meta")).to_contain_text(second_name)
    expect(page.locator(ANSWER).get_by_test_id("sibling-position")).to_have_text("3/3")
