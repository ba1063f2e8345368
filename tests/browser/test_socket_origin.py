"""A page on another port of the same host cannot open a signed-in person's socket in Chromium,
though the browser sends it their session cookie (cookies ignore ports)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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
