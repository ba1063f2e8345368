"""A real Daphne and Debian's chromium, driven by Playwright (never a downloaded browser).

One server per test module. Without /usr/bin/chromium the tests skip with a message, or fail
under REQUIRE_SERVICES=1 (`make test` installs the package when it runs as root).
"""

from __future__ import annotations

import json
import os
import sys
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
from websockets.sync.client import connect

from tests.e2e.servers import (
    ROOT,
    daphne,
    demo_database,
    manage,
    scratch_database,
    server_env,
    sign_up,
)
from inference.default_model import DIR_NAME
from tests.holding import HELD
from tests.settings import TEST_MODEL_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
# Long enough to see an answer grow and to stop it; a reload within this many seconds resumes.
RESUME_GRACE_S = "20"
ANSWER_TOKENS = "240"  # the default length the page asks for: quick, yet long enough to act mid-way
# With UPDATE_SCREENSHOTS=1 the pictures show real answers: the server runs the default model
# (SmolLM2-135M-Instruct and its demo adapters) instead of the tiny random one.
REAL_MODEL = os.environ.get("UPDATE_SCREENSHOTS") == "1"
# The two adapters the tests pick, as (slug, name).
ADAPTERS = (("pirate", "Pirate"), ("json", "JSON")) if REAL_MODEL else (
    ("demo-poet", "Demo Poet"), ("demo-chef", "Demo Chef"))
# An answer held open (tests/holding.py); the real model reads at most 8192 positions.
HOLD = {**HELD, "max_tokens": 4000} if REAL_MODEL else HELD


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # generous, as for the pages: the machine may be busy

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Server:
    def __init__(self, base_url: str, env: dict):
        self.base_url = base_url
        self.env = env

    def shell(self, code: str) -> str:
        """Run Python in `manage.py shell` against the server's own database."""
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=self.env,
            check=True, capture_output=True, text=True, timeout=120,
        )
        return result.stdout.strip()


@pytest.fixture(scope="module")
def server(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("browser")
    database = scratch_database(tmp_path) if REAL_MODEL else demo_database(tmp_path, TEST_MODEL_DIR)
    with database as database_url:
        env = server_env(
            database_url, TEST_MODEL_DIR,
            STREAM_RESUME_GRACE_S=RESUME_GRACE_S, DEFAULT_MAX_NEW_TOKENS=ANSWER_TOKENS,
        )
        if REAL_MODEL:
            env.update(BASE_MODEL=str(TEST_MODEL_DIR / DIR_NAME),
                       ADAPTERS_DIR=str(tmp_path / "adapters"), ENGINE_THREADS="2",
                       DEFAULT_MAX_NEW_TOKENS="96")
            manage(env, "migrate", "--noinput")
            manage(env, "get_default_model", timeout=900)
        with daphne(env, tmp_path / "daphne.log") as base_url:
            wait_for_the_model(base_url)
            yield Server(base_url, env)


def wait_for_the_model(base_url: str) -> None:
    """One short answer over a socket, so that no browser test waits for the model to load."""
    session = sign_up(base_url, "warm-up")
    cookie = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    url = base_url.replace("http://", "ws://") + "/ws/chat/"
    with connect(url, origin=base_url, additional_headers={"Cookie": cookie}) as socket:
        socket.send(json.dumps({"type": "chat.send", "content": "Hi", "params": {"max_tokens": 2}}))
        while json.loads(socket.recv(timeout=120))["type"] != "inference.end":
            pass


class Visit:
    """One person's browser context, recording every request and dialog it sees."""

    def __init__(self, browser, server: Server, **context_options):
        self.server = server
        self.context = browser.new_context(**context_options)
        self.context.set_default_timeout(30_000)  # generous: the machine may be busy
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

    def goto(self, path: str = "/") -> None:
        self.page.goto(self.server.base_url + path)

    def sign_up(self, username: str) -> None:
        self.goto("/accounts/signup/")
        self.page.locator("#id_username").fill(username)
        self.page.locator("#id_password1").fill(PASSWORD)
        self.page.locator("#id_password2").fill(PASSWORD)
        self.page.get_by_role("button", name="Create account").click()
        self.page.wait_for_url(self.server.base_url + "/")
        self.wait_until_connected()

    def wait_until_connected(self) -> None:
        self.page.wait_for_selector('[data-testid="send"]:not([disabled])')

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if urlparse(url).hostname not in ("127.0.0.1",)]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(chromium, server):
    visits = []

    def open_visit(**context_options) -> Visit:
        opened = Visit(chromium, server, **context_options)
        visits.append(opened)
        return opened

    yield open_visit
    for opened in visits:
        opened.close()
