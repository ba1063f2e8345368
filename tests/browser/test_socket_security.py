"""The chat socket in Chromium: a page on another port of the same host cannot open a signed-in
person's socket, though the browser sends it their session cookie (cookies ignore ports); an
open page's socket ends when its session does."""

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# Opens the site's socket from the foreign page and reports how that went.
PAGE = """<!doctype html><title>elsewhere</title><script>
window.outcome = new Promise((resolve) => {
  const socket = new WebSocket("%s");
  socket.onopen = () => resolve("open");
  socket.onclose = (event) => resolve("closed " + event.code);
});
</script>"""


@pytest.fixture
def foreign_page(server):
    """A page served from another port of the site's host."""
    socket_url = server.base_url.replace("http://", "ws://") + "/ws/chat/"
    body = (PAGE % socket_url).encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_it_refuses_the_socket_to_a_page_on_another_port_of_the_same_host(visit, foreign_page):
    person = visit()
    person.sign_up("origin-ada")  # the site's own page connected, as a person's does

    person.page.goto(foreign_page)

    assert person.page.evaluate("window.outcome") == "closed 1006"


def test_it_shows_the_chat_page_signed_out_when_another_tab_logs_out(visit):
    person = visit()
    person.sign_up("logout-ada")
    other_tab = person.context.new_page()  # the same browser: the same session
    other_tab.goto(person.server.base_url + "/")

    other_tab.get_by_role("button", name="Log out").click()
    other_tab.wait_for_url(re.compile(r"/accounts/login/"))

    expect(person.page.get_by_text("You’re signed out")).to_be_visible()
    expect(person.page.get_by_test_id("send")).to_be_disabled()
