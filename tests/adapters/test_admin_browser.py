"""The try-it box in a real browser against a real Daphne: the answer streams into the page."""

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.servers import daphne, demo_database, manage, server_env
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def admin_site(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("admin-live")
    with demo_database(tmp_path, TEST_MODEL_DIR) as database_url:
        env = server_env(database_url, TEST_MODEL_DIR, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
        manage(env, "createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")
        with daphne(env, tmp_path / "daphne.log") as base_url:
            yield base_url


@pytest.fixture
def page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_it_streams_a_test_prompt_into_the_admin_page(admin_site, page):
    problems = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    missing = []
    page.on("response", lambda response: response.status == 404 and missing.append(response.url))
    page.goto(f"{admin_site}/admin/login/?next=/admin/adapters/adapter/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.click("text=demo-poet")

    page.fill("#adapter-try-prompt", "Tell me about rivers.")
    page.click("text=Stream an answer")

    status = page.get_by_test_id("adapter-try-status")
    status.filter(has_text="Ended").wait_for(timeout=60_000)
    assert page.get_by_test_id("adapter-try-output").text_content().strip()
    assert "Ended (length)" in status.text_content() or "Ended (stop)" in status.text_content()
    # Failed loads are checked by URL above (the browser's own favicon request is not ours).
    assert [url for url in missing if not url.endswith("/favicon.ico")] == []
    assert [p for p in problems if not p.startswith("Failed to load resource")] == []


def sign_in(page, admin_site, next_path: str) -> None:
    page.goto(f"{admin_site}/admin/login/?next={next_path}")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def test_it_lays_the_tools_out_below_the_form_not_behind_it(admin_site, page):
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, admin_site, "/admin/adapters/adapter/")
    page.click("text=demo-poet")
    form = page.locator("#adapter_form").bounding_box()
    tools = page.get_by_test_id("adapter-tools").bounding_box()
    assert tools["y"] >= form["y"] + form["height"] - 1, (form, tools)


def test_it_fits_the_adapter_list_in_1280_pixels(admin_site, page):
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, admin_site, "/admin/adapters/adapter/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    results = page.locator("#changelist .results")
    assert results.evaluate("box => box.scrollWidth <= box.clientWidth"), "columns cut off"
    assert page.locator("#result_list").get_by_text("not yet").count() == 3  # never validated
